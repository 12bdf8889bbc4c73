"""The diagnostics report (compat §11): every command with a timeout and a header, listed first
under COMMANDS; failures are reported, never fatal; secrets are redacted in every line."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from edgefleet.diagnose.redact import MIN_SECRET_LEN, REDACTED, is_secret_name, redact_text
from edgefleet.model.config import is_secret_key, redact

__all__ = ["REDACTED", "Command", "Redactor", "build_report", "default_commands",
           "secret_values"]


@dataclass(frozen=True)
class Command:
    """One command of the report, in a section."""

    section: str
    args: tuple[str, ...]
    timeout_s: float = 10.0

    @property
    def title(self) -> str:
        return " ".join(self.args)


def default_commands(*, engine: str = "docker", data_root: str = "/var/lib/docker",
                     supervisor_port: int = 48484) -> list[Command]:
    """The report's commands, by section (ENGINE, HARDWARE, NETWORK, OS, SUPERVISOR, TIME)."""
    sh = ("sh", "-c")
    plan = {
        "ENGINE": [(engine, "version"), (engine, "images"), (engine, "ps", "-a"),
                   (engine, "stats", "--no-stream", "--all"), (engine, "system", "df"),
                   (engine, "volume", "ls"), (engine, "network", "ls"),
                   ("journalctl", "--no-pager", "-n", "200", "-u", "docker"),
                   (*sh, f"{engine} ps -aq | xargs -r {engine} inspect --format "
                         "'{{json .}}'"), ("du", "-sh", data_root)],
        "HARDWARE": [("cat", "/proc/cpuinfo"), ("cat", "/proc/device-tree/model"),
                     ("cat", "/proc/meminfo"), ("ps", "aux"), ("top", "-b", "-n", "1"),
                     ("df", "-h"), ("df", "-ih"), (*sh, "cat /sys/class/thermal/*/temp"),
                     ("free", "-h"), ("lsusb",), ("mount",), ("uname", "-a")],
        "NETWORK": [("ip", "addr"), ("cat", "/etc/resolv.conf"), ("iptables", "-n", "-L"),
                    ("journalctl", "--no-pager", "-n", "200", "-u", "NetworkManager"),
                    ("journalctl", "--no-pager", "-n", "200", "-u", "openvpn"),
                    ("ss", "-tulpn")],
        "OS": [("cat", "/etc/os-release"), ("dmesg", "-T"),
               ("journalctl", "--no-pager", "--list-boots"),
               ("journalctl", "--no-pager", "-p", "warning", "-n", "300"),
               ("systemctl", "--failed", "--no-pager"), ("sysctl", "-a")],
        "SUPERVISOR": [("curl", "-s", "-m", "5", f"http://127.0.0.1:{supervisor_port}/v1/healthy"),
                       ("journalctl", "--no-pager", "-n", "200", "-u", "edgefleet-supervisor")],
        "TIME": [("chronyc", "sources"), ("chronyc", "tracking"), ("date",),
                 ("timedatectl",), ("uptime",)],
    }
    return [Command(section, tuple(args)) for section, cmds in plan.items() for args in cmds]


def secret_values(*, config: dict[str, object], extra: Iterable[str] = ()) -> set[str]:
    """Every secret value of config.json (at any depth) plus the extra known secrets."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if is_secret_key(str(key)) or is_secret_name(str(key)):
                    collect(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    def collect(value: object) -> None:
        if isinstance(value, str) and len(value) >= MIN_SECRET_LEN:
            found.add(value)
        elif isinstance(value, dict | list):
            for v in (value.values() if isinstance(value, dict) else value):
                collect(v)

    walk(config)
    found.update(s for s in extra if len(s) >= MIN_SECRET_LEN)
    return found


class Redactor:
    """Redacts report text: the known secret values and everything `redact_text` finds."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = tuple(secrets)

    def __call__(self, text: str) -> str:
        return redact_text(text, secrets=self._secrets)


def _run(cmd: Command) -> tuple[Command, str]:
    start = time.monotonic()
    try:
        done = subprocess.run(list(cmd.args), capture_output=True, text=True,
                              timeout=cmd.timeout_s, check=False, errors="replace")
    except FileNotFoundError:
        return cmd, f"(command not found: {cmd.args[0]})\n"
    except subprocess.TimeoutExpired:
        return cmd, f"(timed out after {cmd.timeout_s:.0f} s)\n"
    except OSError as exc:
        return cmd, f"(could not run: {exc})\n"
    out = done.stdout + done.stderr
    if done.returncode != 0:
        out += f"(exit code {done.returncode} after {time.monotonic() - start:.1f} s)\n"
    return cmd, out


def build_report(*, commands: list[Command], config_path: Path | None = None,
                 extra_secrets: Iterable[str] = ()) -> str:
    """Run every command (in parallel, each with its timeout) and return the redacted report."""
    config: dict[str, object] = {}
    if config_path is not None:
        try:
            loaded = json.loads(config_path.read_text())
            config = loaded if isinstance(loaded, dict) else {}
        except (OSError, json.JSONDecodeError):
            config = {}
    redactor = Redactor(secret_values(config=config, extra=extra_secrets))
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(_run, commands))
    lines = ["--- COMMANDS ---", *(f"{c.section}: {c.title}" for c in commands), ""]
    section = ""
    for cmd, out in results:
        if cmd.section != section:
            section = cmd.section
            lines.append(f"===== {section} =====")
        lines.append(f"--- {cmd.title} ---")
        lines.append(out.rstrip("\n"))
    if config_path is not None:
        lines += ["===== CONFIG =====", f"--- {config_path} (redacted) ---",
                  json.dumps(redact(data=config), indent=2)]
    return redactor("\n".join(lines) + "\n")
