"""How a stored diagnostics run reads on the Diagnostics tab: checks failed first with what
each one looks at, and the supervisor's state, target against current, differences marked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EXPLAIN = {
    "check_os": "Whether the OS is one the supervisor knows, and its version.",
    "check_under_voltage": "Under-voltage warnings from the kernel: a weak power supply makes "
                           "a device corrupt its storage and reboot at random.",
    "check_memory": "Free memory: a device short of memory kills services (OOM).",
    "check_temperature": "CPU temperature and throttling.",
    "check_diskspace": "Free space on the engine's data partition: a full disk stops "
                       "downloads and writes.",
    "check_write_latency": "How slow writes to the storage are: slow or failing SD cards "
                           "show here first.",
    "check_localdisk": "The data partition is mounted read-write and fills its disk.",
    "check_timesync": "The clock is synchronised: TLS and the registry fail on a wrong clock.",
    "check_clock_skew": "The device's clock against the server's.",
    "check_os_rollback": "Whether the OS rolled back after a failed host update.",
    "check_rootfs_fingerprint": "Whether the root filesystem was changed from the release.",
    "check_container_engine": "The container engine answers, and has not restarted uncleanly "
                              "(crash loops).",
    "check_service_restarts": "Services restarting unexpectedly or failing their "
                              "healthchecks.",
    "check_supervisor": "The supervisor answers on its API port and is healthy.",
    "check_networking": "The device reaches the fleet server's API.",
    "check_dns": "Names resolve (the API endpoint's).",
}


@dataclass(frozen=True)
class CheckRow:
    name: str
    success: bool
    status: str
    explanation: str


def check_rows(checks: Any) -> tuple[list[CheckRow], str]:
    """(the checks, failed first then by name; an error text when the run had none)."""
    if not isinstance(checks, dict) or not isinstance(checks.get("checks"), list):
        return [], str((checks or {}).get("error", "no checks in this run")) \
            if isinstance(checks, dict) else "no checks in this run"
    rows = [CheckRow(name=str(c.get("name", "?")), success=bool(c.get("success")),
                     status=str(c.get("status", "")),
                     explanation=EXPLAIN.get(str(c.get("name")), ""))
            for c in checks["checks"] if isinstance(c, dict)]
    return sorted(rows, key=lambda r: (r.success, r.name)), ""


@dataclass(frozen=True)
class StateRow:
    service: str
    target_release: str
    current_release: str
    current_status: str
    differences: list[str]


def _target_services(target: Any) -> dict[str, tuple[str, str]]:
    """service -> (app uuid, commit) from a v3 target document."""
    out: dict[str, tuple[str, str]] = {}
    if not isinstance(target, dict):
        return out
    for device in target.values():
        for app_uuid, app in ((device or {}).get("apps") or {}).items():
            for commit, rel in ((app or {}).get("releases") or {}).items():
                for name in ((rel or {}).get("services") or {}):
                    out[name] = (app_uuid, commit)
    return out


def _current_services(current: Any) -> dict[str, tuple[str, str, str]]:
    """service -> (app uuid, commit, status) from `GET /v2/applications/state`."""
    out: dict[str, tuple[str, str, str]] = {}
    if not isinstance(current, dict):
        return out
    for app in current.values():
        if not isinstance(app, dict):
            continue
        for name, svc in (app.get("services") or {}).items():
            out[name] = (str(app.get("appUuid") or ""), str(app.get("commit") or ""),
                         str((svc or {}).get("status") or ""))
    return out


def state_rows(state: Any) -> list[StateRow]:
    """Each service the target or the device names, with what differs marked."""
    state = state if isinstance(state, dict) else {}
    want = _target_services(state.get("target"))
    have = _current_services(state.get("current"))
    rows = []
    for name in sorted(set(want) | set(have)):
        differences = []
        target_commit = want[name][1] if name in want else ""
        current_commit, status = (have[name][1], have[name][2]) if name in have else ("", "")
        if name not in have:
            differences.append("in the target, not on the device")
        elif name not in want:
            differences.append("on the device, not in the target")
        else:
            if target_commit != current_commit:
                differences.append("release differs")
            if status.lower() != "running":
                differences.append(f"not running ({status or 'no status'})")
        rows.append(StateRow(service=name, target_release=target_commit,
                             current_release=current_commit, current_status=status,
                             differences=differences))
    return rows
