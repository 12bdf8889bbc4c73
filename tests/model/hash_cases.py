"""~20 varied services (everything hash version 1 could express) for the hash tests.

Each case is a v3 target document; `CASES[name]` resolves to one app whose services are
hashed. Changing a case changes the pinned hashes: add cases, never edit them.
"""

from __future__ import annotations

from typing import Any


def _doc(services: dict[str, Any], *, volumes: dict[str, Any] | None = None,
         networks: dict[str, Any] | None = None) -> dict[str, Any]:
    svcs = {name: {"id": i + 1, "image_id": i + 10, "image": f"reg.local/{name}:1",
                   "composition": comp, **extra}
            for i, (name, (comp, extra)) in enumerate(services.items())}
    return {"dev1": {"name": "box", "config": {}, "apps": {"app1": {
        "id": 11, "name": "myapp", "releases": {"c0ffee": {
            "id": 5, "services": svcs, "volumes": volumes or {},
            "networks": networks or {}}}}}}}


def one(comp: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return _doc({"s": (comp, extra)})


CASES: dict[str, dict[str, Any]] = {
    "default-composition": one({}),
    "image-only": one({"image": "nginx"}),
    "command-string": one({"command": "sh -c 'echo hi; sleep 9'"}),
    "entrypoint-list": one({"entrypoint": ["/bin/sh", "-c"], "command": ["sleep", "1"]}),
    "env-and-target-env": one({"environment": {"A": "1", "B": "two"}},
                              environment={"C": "3", "A": "override"}),
    "env-list": one({"environment": ["X=1", "Y=", "Z=a=b"]}),
    "labels": one({"labels": {"com.example.a": "1", "io.resin.update.strategy":
                              "kill-then-download"}}, labels={"extra": "yes"}),
    "ports": one({"ports": ["80:8080", "127.0.0.1:53:53/udp", "1000-1001:2000-2001",
                            {"target": 81, "published": 8081}]}),
    "volumes": _doc({"s": ({"volumes": ["data:/data", "cache:/cache:ro",
                                        {"type": "tmpfs", "target": "/run/t"}]}, {})},
                    volumes={"data": {}, "cache": {"labels": {"k": "v"}}}),
    "networks": _doc({"a": ({"networks": {"front": {"aliases": ["x"],
                                                    "ipv4_address": "10.99.0.5"},
                                          "back": None}}, {}),
                      "b": ({"networks": ["back"], "depends_on": ["a"]}, {})},
                     networks={"front": {"ipam": {"config": [{"subnet": "10.99.0.0/24"}]}},
                               "back": {"internal": True}}),
    "host-network": one({"network_mode": "host", "privileged": True}),
    "service-network": _doc({"a": ({"command": ["sleep", "9"]}, {}),
                             "b": ({"network_mode": "service:a", "depends_on": {
                                 "a": {"condition": "service_started"}}}, {})}),
    "caps-devices": one({"cap_add": ["NET_ADMIN", "SYS_TIME"], "cap_drop": ["MKNOD"],
                         "devices": ["/dev/ttyUSB0:/dev/ttyUSB0", "/dev/i2c-1"]}),
    "dns-hosts": one({"dns": ["1.1.1.1", "8.8.8.8"], "dns_search": ["lan"],
                      "extra_hosts": ["a:10.0.0.1", "b=10.0.0.2"]}),
    "limits": one({"mem_limit": "512m", "mem_reservation": "128m", "cpus": 0.5,
                   "cpu_shares": 512, "shm_size": "64m", "ulimits": {"nofile": {
                       "soft": 1024, "hard": 2048}, "nproc": 512}}),
    "healthcheck": one({"healthcheck": {"test": ["CMD", "true"], "interval": "30s",
                                        "timeout": "5s", "retries": 3,
                                        "start_period": "1m"}}),
    "misc": one({"restart": "on-failure", "user": "1000:1000", "working_dir": "/app",
                 "hostname": "box", "stop_signal": "SIGINT", "stop_grace_period": "30s",
                 "init": True, "read_only": True, "tty": True, "stdin_open": True,
                 "security_opt": ["no-new-privileges"], "group_add": ["dialout"],
                 "sysctls": {"net.core.somaxconn": 1024}, "tmpfs": ["/tmp"]}),
    "features": one({"labels": {"io.balena.features.supervisor-api": "1",
                                "io.balena.features.dbus": "1",
                                "io.balena.features.balena-socket": "1",
                                "io.balena.features.journal-logs": "true"}}),
    "restart-no": one({"restart": "no", "pid": "host", "oom_score_adj": -500}),
    "not-running": one({"command": ["sleep", "1"]}, running=False),
}
