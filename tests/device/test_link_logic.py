"""The cloud link's decisions without a server: report diffing and limits, the offline log
buffer, poll timing, Retry-After, metrics parsing, and the apps part of a report."""

from __future__ import annotations

from typing import Any

from edgefleet.device.cloud import retry_after
from edgefleet.device.logstream import OfflineBuffer, to_wire
from edgefleet.device.metrics import IGNORED_INTERFACES, Metrics, meminfo_mb
from edgefleet.device.poll import next_delay_s, poll_interval_s
from edgefleet.device.report import (
    ReportPolicy,
    ReportScheduler,
    apps_report,
    device_report,
    report_diff,
)
from edgefleet.device.store import AppRecord, ImageRecord
from edgefleet.model.engine_state import ContainerState, EngineState
from edgefleet.model.target import (
    AppTarget,
    DeviceTarget,
    ReleaseTarget,
    ServiceTarget,
    TargetState,
)


def report(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"status": "Idle", "os_version": "x", "cpu_usage": 5,
                            "memory_usage": 100, "apps": {"a": {"releases": {}}}}
    return {**base, **over}


# --- report diffing and limits ---------------------------------------------------------------
def test_diff_has_only_changed_fields_and_apps_whole() -> None:
    old = report()
    new = report(status="Updating", apps={"a": {"releases": {"c": {}}}})
    assert report_diff(accepted=old, current=new) == {
        "status": "Updating", "apps": {"a": {"releases": {"c": {}}}}}
    assert report_diff(accepted=new, current=new) == {}
    assert report_diff(accepted={}, current=new) == new


def test_first_report_is_whole_then_only_diffs() -> None:
    s = ReportScheduler()
    first = s.due(current=report(), now_s=0)
    assert first == report()
    s.sent(diff=first, now_s=0)
    assert s.due(current=report(), now_s=100) is None, "nothing changed, nothing sent"
    diff = s.due(current=report(status="Updating"), now_s=100)
    assert diff == {"status": "Updating"}


def test_at_most_one_report_per_10_s() -> None:
    s = ReportScheduler()
    s.sent(diff=s.due(current=report(), now_s=0) or {}, now_s=0)
    assert s.due(current=report(status="Updating"), now_s=9.9) is None
    assert s.due(current=report(status="Updating"), now_s=10) == {"status": "Updating"}


def test_metrics_alone_wait_5_min_but_ride_along_with_state() -> None:
    s = ReportScheduler()
    s.sent(diff=s.due(current=report(), now_s=0) or {}, now_s=0)
    assert s.due(current=report(cpu_usage=50), now_s=60) is None
    assert s.due(current=report(cpu_usage=50), now_s=299) is None
    assert s.due(current=report(cpu_usage=50), now_s=300) == {"cpu_usage": 50}
    both = s.due(current=report(cpu_usage=60, status="Updating"), now_s=60)
    assert both == {"cpu_usage": 60, "status": "Updating"}


def test_failures_back_off_15_s_doubling_to_the_cap_and_keep_the_diff() -> None:
    s = ReportScheduler(policy=ReportPolicy(backoff_cap_s=60))
    assert s.due(current=report(), now_s=0) is not None
    delays = [s.failed(now_s=0) for _ in range(4)]
    assert delays == [15, 30, 60, 60]
    assert s.due(current=report(), now_s=59) is None
    assert s.due(current=report(), now_s=60) == report(), "unsent changes are all still sent"


def test_retry_after_wins_over_a_shorter_backoff() -> None:
    s = ReportScheduler()
    assert s.failed(now_s=0, retry_after_s=120) == 120
    assert s.due(current=report(), now_s=119) is None
    assert s.due(current=report(), now_s=120) is not None
    s.sent(diff=report(), now_s=120)
    assert s.failures == 0


def test_retry_after_header_forms() -> None:
    assert retry_after(value="30") == 30
    assert retry_after(value=None) is None
    assert retry_after(value="soon") is None
    assert retry_after(value="Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


# --- offline log buffer ----------------------------------------------------------------------
def line(n: int) -> dict[str, Any]:
    return {"message": f"m{n}", "timestamp": n, "isSystem": False, "isStdErr": False}


def test_buffer_keeps_newest_and_says_how_many_were_dropped() -> None:
    buf = OfflineBuffer(limit=5)
    for n in range(12):
        buf.add(line(n))
    batch = buf.peek(count=100, now_ms=999)
    assert batch.lines[0]["message"] == "7 messages dropped while offline"
    assert batch.lines[0]["isSystem"] is True
    assert [x["message"] for x in batch.lines[1:]] == ["m7", "m8", "m9", "m10", "m11"]
    buf.delivered(batch)
    assert len(buf) == 0 and buf.dropped == 0
    assert buf.peek(count=100, now_ms=1).lines == []


def test_a_failed_send_loses_nothing_and_lines_added_meanwhile_stay() -> None:
    buf = OfflineBuffer(limit=100)
    for n in range(3):
        buf.add(line(n))
    batch = buf.peek(count=2, now_ms=0)
    assert [x["message"] for x in batch.lines] == ["m0", "m1"]
    # not delivered: the same lines again
    assert buf.peek(count=2, now_ms=0).lines == batch.lines
    buf.add(line(3))
    buf.delivered(batch)
    assert [x["message"] for x in buf.peek(count=10, now_ms=0).lines] == ["m2", "m3"]


def test_drops_during_a_send_are_reported_in_the_next_batch() -> None:
    buf = OfflineBuffer(limit=3)
    for n in range(4):
        buf.add(line(n))
    batch = buf.peek(count=10, now_ms=0)  # reports 1 dropped
    for n in range(4, 6):  # two more dropped while the batch is in flight
        buf.add(line(n))
    buf.delivered(batch)
    nxt = buf.peek(count=10, now_ms=0)
    assert nxt.lines[0]["message"] == "2 messages dropped while offline"
    assert [x["message"] for x in nxt.lines[1:]] == ["m4", "m5"]


def test_lines_after_an_upload_position_and_sent_lines_are_not_counted_as_dropped() -> None:
    buf = OfflineBuffer(limit=3)
    for n in range(3):
        buf.add(line(n))
    first = buf.peek(count=2, now_ms=0)
    assert [x["message"] for x in buf.after(seq=first.upto_seq, count=10).lines] == ["m2"]
    buf.inflight_seq = first.upto_seq  # m0, m1 are in an upload in progress
    buf.add(line(3))  # pushes out m0, which was sent already
    assert buf.dropped == 0
    buf.add(line(4))
    buf.add(line(5))  # pushes out m1 (sent) and m2 (not sent)
    assert buf.dropped == 1
    empty = buf.after(seq=10**6, count=10)
    assert empty.lines == [] and empty.upto_seq == 10**6


def test_log_line_wire_format() -> None:
    rec = {"message": "hi", "ts_ms": 5, "is_system": False, "is_stderr": True,
           "service": "web", "app_uuid": "a"}
    assert to_wire(record=rec, service_id=3) == {"message": "hi", "timestamp": 5, "isSystem": False,
                                          "isStdErr": True, "serviceId": 3,
                                          "serviceName": "web"}
    sysrec = {**rec, "is_system": True, "service": ""}
    assert "serviceId" not in to_wire(record=sysrec, service_id=None)


# --- poll timing -----------------------------------------------------------------------------
def target(config: dict[str, str]) -> TargetState:
    return TargetState(device_uuid="d", device=DeviceTarget(config=config))


def test_poll_interval_from_config_var_else_config_json() -> None:
    assert poll_interval_s(default_s=900, target=None) == 900
    assert poll_interval_s(default_s=900, target=target({"SUPERVISOR_POLL_INTERVAL": "60000"})
                           ) == 60
    assert poll_interval_s(default_s=900, target=target(
        {"BALENA_SUPERVISOR_POLL_INTERVAL": "20000"})) == 20
    for bad in ("5", "abc", "999999999999"):
        assert poll_interval_s(default_s=900, target=target(
            {"SUPERVISOR_POLL_INTERVAL": bad})) == 900


def test_poll_delay_jitters_early_and_backs_off_to_the_interval() -> None:
    assert next_delay_s(interval_s=100, failures=0, rand=0) == 100
    assert next_delay_s(interval_s=100, failures=0, rand=1) == 90
    assert next_delay_s(interval_s=100, failures=1, rand=0) == 1.0
    assert next_delay_s(interval_s=100, failures=3, rand=0) == 4.0
    assert next_delay_s(interval_s=100, failures=30, rand=0) == 100


# --- metrics and report contents -------------------------------------------------------------
def test_meminfo_and_cpu_usage(tmp_path: Any) -> None:
    assert meminfo_mb(text="MemTotal: 2048000 kB\nMemFree: 100 kB\nMemAvailable: 1024000 kB\n") == (
        1000, 2000)
    proc = tmp_path
    (proc / "meminfo").write_text("MemTotal: 2048 kB\nMemAvailable: 1024 kB\n")
    (proc / "stat").write_text("cpu  100 0 0 100 0 0 0 0 0 0\n")
    m = Metrics(data_dir=tmp_path, proc=proc, sys_root=tmp_path / "nosys")
    m.read()
    (proc / "stat").write_text("cpu  175 0 0 125 0 0 0 0 0 0\n")  # 75 busy of 100
    got = m.read()
    assert got["cpu_usage"] == 75
    assert got["memory_total"] == 2 and got["memory_usage"] == 1
    assert got["storage_total"] > 0
    assert "cpu_temp" not in got


def test_engine_bridges_and_loopback_are_not_reported() -> None:
    for name in ("lo", "docker0", "veth12ab", "br-1234", "supervisor0", "efbr21"):
        assert IGNORED_INTERFACES.match(name)
    for name in ("eth0", "wlan0", "enp3s0"):
        assert not IGNORED_INTERFACES.match(name)


def container(name: str, status: str = "running", app: str = "app1") -> ContainerState:
    return ContainerState(id=name, name=name, image=f"img/{name.split('_')[0]}", image_id="x",
                          status=status,  # type: ignore[arg-type]
                          labels={"io.balena.app-uuid": app,
                                  "io.balena.service-name": name.split("_")[0]})


def test_apps_report_during_an_update() -> None:
    release = ReleaseTarget(id=2, services={
        "web": ServiceTarget(id=1, image="img/web2"), "db": ServiceTarget(id=2, image="img/db")})
    tgt = TargetState(device_uuid="d", device=DeviceTarget(apps={
        "app1": AppTarget(id=1, releases={"new": release})}))
    observed = EngineState(containers=(container("web_1_1_old"), container("db_2_2_new")))
    images = [ImageRecord("img/web2", None, "app1", "web", "Downloading", 50, 200, "")]
    apps = [AppRecord("app1", 1, "new", 2, "downloading", "")]
    got = apps_report(target=tgt, apps=apps, images=images, observed=observed)
    assert got == {"app1": {"release_uuid": "old", "releases": {
        "new": {"update_status": "downloading", "services": {
            "db": {"image": "img/db", "status": "Running"},
            "web": {"image": "img/web2", "status": "Downloading", "download_progress": 25}}},
        "old": {"services": {
            "web": {"image": "img/web", "status": "Running"}}}}}}
    done = apps_report(target=tgt, apps=[AppRecord("app1", 1, "new", 2, "done", "")],
                       images=[], observed=EngineState(containers=(
                           container("web_1_2_new"), container("db_2_2_new", "exited"))))
    assert done["app1"]["release_uuid"] == "new"
    assert done["app1"]["releases"]["new"]["services"]["db"]["status"] == "exited"
    full = device_report(app_state="applied", apps=done, info={"os_version": "o"},
                         metrics={"cpu_usage": 1})
    assert full["status"] == "Idle" and full["apps"] == done and full["cpu_usage"] == 1
