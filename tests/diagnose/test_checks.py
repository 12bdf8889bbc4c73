"""Each host check passes on a healthy fixture tree and fails on a broken one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgefleet.cli import app
from edgefleet.diagnose import checks as c
from edgefleet.diagnose.host import Host

GOOD_MEMINFO = "MemTotal: 1000000 kB\nMemFree: 100000 kB\nMemAvailable: 600000 kB\n"
DISKSTATS_OK = "   8   0 sda 100 0 0 0 50 0 0 400 0 0 0\n"
DISKSTATS_SLOW = ("   8   0 sda 100 0 0 0 50 0 0 120000 0 0 0\n"
                  "   7   0 loop0 1 0 0 0 1 0 0 99999 0 0 0\n")


def tree(tmp_path: Path, files: dict[str, str]) -> Host:
    for name, text in files.items():
        p = tmp_path / name.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (tmp_path / "var/lib/docker").mkdir(parents=True, exist_ok=True)
    return Host(root=tmp_path, run_commands=False)


def dmesg(text: str) -> dict[str, str]:
    return {"/.commands/dmesg": f"0\n{text}"}


def test_memory(tmp_path: Path) -> None:
    assert c.check_memory(tree(tmp_path / "a", {"/proc/meminfo": GOOD_MEMINFO})).success
    low = c.check_memory(tree(tmp_path / "b", {"/proc/meminfo": "MemTotal: 1000000 kB\n"
                                               "MemFree: 20000 kB\nCached: 10000 kB\n"
                                               "Buffers: 10000 kB\n"}))
    assert not low.success and "4%" in low.status
    assert c.check_memory(tree(tmp_path / "c", {})).status.startswith("not applicable")


def test_temperature_and_throttling(tmp_path: Path) -> None:
    cool = tree(tmp_path / "a", {"/sys/class/thermal/thermal_zone0/temp": "45000",
                                 **dmesg("all fine\n")})
    assert c.check_temperature(cool).success
    hot = tree(tmp_path / "b", {"/sys/class/thermal/thermal_zone0/temp": "85000",
                                **dmesg("")})
    assert not c.check_temperature(hot).success and "85 °C" in c.check_temperature(hot).status
    throttled = tree(tmp_path / "c", {"/sys/class/thermal/thermal_zone0/temp": "50000",
                                      **dmesg("CPU0: Core temperature above threshold\n")})
    assert "throttling" in c.check_temperature(throttled).status
    assert "no thermal zones" in c.check_temperature(tree(tmp_path / "d", {})).status


def test_under_voltage(tmp_path: Path) -> None:
    assert c.check_under_voltage(tree(tmp_path / "a", dmesg("boot ok\n"))).success
    bad = c.check_under_voltage(tree(tmp_path / "b", dmesg(
        "[ 1.0] Under-voltage detected! (0x00050005)\n[ 9.0] Under-voltage detected!\n")))
    assert not bad.success and bad.status.startswith("2 under-voltage")
    assert "not applicable" in c.check_under_voltage(tree(tmp_path / "c", {})).status


def test_diskspace_names_the_free_percentage(tmp_path: Path) -> None:
    ok = tree(tmp_path / "a", {"/var/lib/docker/.statvfs": "1000000000 500000000"})
    assert c.check_diskspace(ok).success
    full = tree(tmp_path / "b", {"/var/lib/docker/.statvfs": "1000000000 50000000"})
    result = c.check_diskspace(full)
    assert not result.success and "5.0% free" in result.status


def test_write_latency(tmp_path: Path) -> None:
    assert c.check_write_latency(tree(tmp_path / "a", {"/proc/diskstats": DISKSTATS_OK})).success
    slow = c.check_write_latency(tree(tmp_path / "b", {"/proc/diskstats": DISKSTATS_SLOW}))
    assert not slow.success and "sda: 2400 ms" in slow.status and "loop0" not in slow.status


def test_localdisk_read_only_and_expansion(tmp_path: Path) -> None:
    def disk(root: Path, part_size: int) -> None:
        (root / "sys/block/mmcblk0/mmcblk0p6").mkdir(parents=True)
        (root / "sys/block/mmcblk0/size").write_text("1000")
        (root / "sys/block/mmcblk0/mmcblk0p6/size").write_text(str(part_size))
        (root / "sys/block/mmcblk0/mmcblk0p6/partition").write_text("6")
        (root / "sys/class/block").mkdir(parents=True)
        (root / "sys/class/block/mmcblk0p6").symlink_to(root / "sys/block/mmcblk0/mmcblk0p6")

    good = tree(tmp_path / "a", {"/proc/mounts": "/dev/mmcblk0p6 /var/lib/docker ext4 rw 0 0\n"})
    disk(tmp_path / "a", 950)
    assert c.check_localdisk(good).success
    bad = tree(tmp_path / "b", {"/proc/mounts": "/dev/mmcblk0p6 /var/lib ext4 ro,noatime 0 0\n"})
    disk(tmp_path / "b", 300)
    result = c.check_localdisk(bad)
    assert not result.success
    assert "read-only" in result.status and "not expanded" in result.status


def test_os_rollback_and_os(tmp_path: Path) -> None:
    assert c.check_os_rollback(tree(tmp_path / "a", {})).success
    crumb = tree(tmp_path / "b", {"/mnt/state/rollback-altboot-breadcrumb": ""})
    assert not c.check_os_rollback(crumb).success
    assert c.check_os(tree(tmp_path / "c", {"/etc/os-release": 'PRETTY_NAME="balenaOS 5"'}
                           )).status == "Supported OS: balenaOS 5"
    assert not c.check_os(tree(tmp_path / "d", {})).success


def test_timesync(tmp_path: Path) -> None:
    cmd = "/.commands/timedatectl_show_-p_NTPSynchronized_--value"
    assert c.check_timesync(tree(tmp_path / "a", {cmd: "0\nyes\n"})).success
    bad = c.check_timesync(tree(tmp_path / "b", {cmd: "0\nno\n"}))
    assert not bad.success and "not yet valid" in bad.status
    assert "not applicable" in c.check_timesync(tree(tmp_path / "c", {})).status


@pytest.mark.parametrize("healthy", [True, False])
def test_cli_json_and_exit_code(tmp_path: Path, healthy: bool) -> None:
    files = {"/proc/meminfo": GOOD_MEMINFO if healthy else "MemTotal: 100 kB\nMemFree: 1 kB\n",
             "/etc/os-release": "NAME=test", "/proc/diskstats": DISKSTATS_OK}
    tree(tmp_path, files)
    result = CliRunner().invoke(app, ["diagnose", "checks", "--json", "--root", str(tmp_path)])
    doc = json.loads(result.stdout)
    assert set(doc) == {"diagnose_version", "checks"}
    memory = next(x for x in doc["checks"] if x["name"] == "check_memory")
    assert memory["success"] is healthy
    assert result.exit_code == (0 if healthy else 1)


def test_rootfs_fingerprint(tmp_path: Path) -> None:
    import hashlib

    files = {"/bin/tool": "binary", "/etc/issue": "balenaOS",
             "/var/cache/ldconfig/aux-cache": "changes"}
    lines = "".join(f"{hashlib.md5(t.encode()).hexdigest()}  {p}\n" for p, t in files.items())
    good = tree(tmp_path / "a", {**files, "/balenaos.fingerprint": lines})
    assert c.check_rootfs_fingerprint(good).success
    broken = tree(tmp_path / "b", {**files, "/balenaos.fingerprint": lines,
                                   "/bin/tool": "bitflip", "/var/cache/ldconfig/aux-cache": "x"})
    result = c.check_rootfs_fingerprint(broken)
    assert not result.success and "/bin/tool: differs" in result.status
    assert "aux-cache" not in result.status
    assert "not applicable" in c.check_rootfs_fingerprint(tree(tmp_path / "c", {})).status
