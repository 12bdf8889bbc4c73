"""What `edgefleet --help` adds to the commands: the panel each belongs to (the fleet's users
on their workstation, the device's operators on the device) and an example per command."""

from __future__ import annotations

import typer

FLEET = "Fleet: manage fleets, devices and releases (on your workstation)"
DEVICE = "Device: run and inspect this device (on the device)"
SETUP = "Set up: run the fleet server, or everything on one machine"
PANELS = {
    "login": FLEET, "fleet": FLEET, "device": FLEET, "push": FLEET, "env": FLEET,
    "logs": FLEET, "release": FLEET, "ssh": FLEET, "tunnel": FLEET,
    "org": FLEET, "support": FLEET, "audit": FLEET, "token": FLEET, "user": FLEET,
    "key": FLEET,
    "supervisor": DEVICE, "diagnose": DEVICE, "config": DEVICE, "engine": DEVICE,
    "preload": DEVICE,
    "up": SETUP, "server": SETUP,
}

EXAMPLES = {
    "login": "edgefleet login --url http://127.0.0.1:48480 --token $(cat admin.token)",
    "push": "edgefleet push kiosks ./my-app",
    "logs": "edgefleet logs 3f2a1b9 --service web --follow",
    "up": "edgefleet up --data-dir /tmp/up",
    "fleet create": "edgefleet fleet create kiosks --type raspberrypi4-64",
    "fleet list": "edgefleet fleet list --json",
    "fleet show": "edgefleet fleet show kiosks",
    "fleet pin": "edgefleet fleet pin kiosks 5c7f9e1a (or: latest)",
    "release list": "edgefleet release list kiosks",
    "release show": "edgefleet release show 5c7f9e1a",
    "device list": "edgefleet device list --fleet kiosks",
    "device show": "edgefleet device show 3f2a1b9",
    "device pin": "edgefleet device pin 3f2a1b9 5c7f9e1a (or: --unpin)",
    "device rename": "edgefleet device rename 3f2a1b9 kitchen",
    "device rm": "edgefleet device rm kitchen --yes",
    "device config": "edgefleet device config kiosks -o /mnt/boot/config.json",
    "device note": "edgefleet device note 3f2a1b9 \"fan replaced, temps normal\"",
    "device notes": "edgefleet device notes 3f2a1b9",
    "org create": "edgefleet org create acme",
    "org list": "edgefleet org list",
    "org invite": "edgefleet org invite acme bob --role operator",
    "org members": "edgefleet org members acme",
    "org role": "edgefleet org role acme bob developer (or: --fleet kiosks)",
    "org remove": "edgefleet org remove acme bob",
    "support grant": "edgefleet support grant 3f2a1b9 --for 2h (or: kiosks --fleet --for 1d)",
    "support list": "edgefleet support list --all",
    "support revoke": "edgefleet support revoke 7",
    "audit": "edgefleet audit --device 3f2a1b9 --since 1d",
    "token create": "edgefleet token create ci --expires 30d --read-only",
    "token list": "edgefleet token list",
    "token revoke": "edgefleet token revoke 4",
    "user create": "edgefleet user create carol --support",
    "user support": "edgefleet user support carol (or: --off)",
    "env set": "edgefleet env set GREETING hello --fleet kiosks --service web",
    "env list": "edgefleet env list --device kitchen",
    "env rm": "edgefleet env rm GREETING --fleet kiosks",
    "supervisor run": "edgefleet supervisor run --config /mnt/boot/config.json",
    "supervisor status": "edgefleet supervisor status",
    "supervisor logs": "edgefleet supervisor logs --follow --service web",
    "supervisor locks": "edgefleet supervisor locks",
    "supervisor prune": "edgefleet supervisor prune --dry-run",
    "supervisor api-key": "curl -H \"Authorization: Bearer $(edgefleet supervisor api-key)\""
                          " http://127.0.0.1:48484/v2/applications/state",
    "server run": "edgefleet server run --data-dir /var/lib/edgefleet-server",
    "server unit": "edgefleet server unit --database-url postgresql+psycopg://ef:pw@db/ef"
                   " > /etc/systemd/system/edgefleet-server.service",
    "supervisor unit": "edgefleet supervisor unit --config /mnt/boot/config.json"
                       " > /etc/systemd/system/edgefleet-supervisor.service"
                       " && systemctl enable --now edgefleet-supervisor",
    "diagnose checks": "edgefleet diagnose checks --config /mnt/boot/config.json",
    "diagnose report": "edgefleet diagnose report -o report.txt",
    "diagnose state": "edgefleet diagnose state",
    "config show": "edgefleet config show --config /mnt/boot/config.json",
    "config get": "edgefleet config get dnsServers",
    "config set": "edgefleet config set dnsServers 1.1.1.1,9.9.9.9",
    "config unset": "edgefleet config unset dnsServers",
    "config validate": "edgefleet config validate --config /mnt/boot/config.json",
    "engine storage": "edgefleet engine storage --volumes",
    "engine prune": "edgefleet engine prune --dry-run",
    "preload extract": "edgefleet preload extract web:1.0 -o bundle/",
    "preload inject": "edgefleet preload inject --from bundle/ --data-root /mnt/data/docker"
                      " --apps apps.json",
    "preload copy": "edgefleet preload copy web:1.0 --from-root /var/lib/docker"
                    " --data-root /mnt/data/docker",
    "preload release": "edgefleet preload release kiosks --data-root /mnt/data/docker --pin",
    "ssh": "edgefleet ssh 3f2a1b9",
    "tunnel": "edgefleet tunnel 3f2a1b9 8080:80",
    "device restart": "edgefleet device restart 3f2a1b9 --service web",
    "device start-service": "edgefleet device start-service 3f2a1b9 web",
    "device stop-service": "edgefleet device stop-service 3f2a1b9 web",
    "device reboot": "edgefleet device reboot 3f2a1b9",
    "device shutdown": "edgefleet device shutdown 3f2a1b9",
    "device purge": "edgefleet device purge 3f2a1b9",
    "device identify": "edgefleet device identify 3f2a1b9",
    "device diagnose": "edgefleet device diagnose 3f2a1b9",
    "device diagnostics": "edgefleet device diagnostics 3f2a1b9 --show 1",
    "key add": "edgefleet key add laptop ~/.ssh/id_ed25519.pub",
    "key list": "edgefleet key list",
    "key rm": "edgefleet key rm laptop",
    "user passwd": "edgefleet user passwd alice --password-stdin < password.txt",
}


def _example(name: str, help_text: str | None) -> str | None:
    example = EXAMPLES.get(name)
    if example is None or (help_text and "Example" in help_text):
        return None
    return f"Example: {example}"


def decorate(root: typer.Typer) -> None:
    """Put each top-level command in its panel and give every command its example (as the
    help's epilog)."""
    for cmd in root.registered_commands:
        name = cmd.name or (cmd.callback.__name__ if cmd.callback else "")
        cmd.rich_help_panel = PANELS.get(name, cmd.rich_help_panel)
        cmd.epilog = cmd.epilog or _example(name, cmd.help or (cmd.callback.__doc__
                                                               if cmd.callback else None))
    for group in root.registered_groups:
        group.rich_help_panel = PANELS.get(group.name or "", group.rich_help_panel)
        sub = group.typer_instance
        if sub is None:
            continue
        for cmd in sub.registered_commands:
            name = cmd.name or (cmd.callback.__name__.replace("_", "-").strip("-")
                                if cmd.callback else "")
            cmd.epilog = cmd.epilog or _example(
                f"{group.name} {name}", cmd.help or (cmd.callback.__doc__
                                                     if cmd.callback else None))
