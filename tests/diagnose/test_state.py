"""Target vs current comparison (pure part)."""

from __future__ import annotations

from edgefleet.diagnose.state import compare
from edgefleet.model import naming
from edgefleet.model.engine_state import ContainerState, EngineState


def container(service: str, image: str, commit: str, status: str) -> ContainerState:
    return ContainerState(id=service, name=f"{service}_1_1_{commit}", image=image,
                          image_id="sha256:x", status=status,
                          labels={naming.APP_UUID: "a1", naming.SERVICE_NAME: service})


def test_differences_are_marked() -> None:
    target = {"dev": {"apps": {"a1": {"id": 1, "releases": {"c2": {"services": {
        "web": {"image": "r/web:2"}, "db": {"image": "r/db:1"},
        "job": {"image": "r/job:1", "running": False}, "new": {"image": "r/new:1"}}}}}}}}
    observed = EngineState(containers=(
        container("web", "r/web:1", "c1", "running"), container("db", "r/db:1", "c2", "exited"),
        container("job", "r/job:1", "c2", "running"), container("gone", "r/g:1", "c1",
                                                                "running")))
    rows = {r.service: r.differences for r in compare(target=target, observed=observed)}
    assert rows["web"] == ["image", "release"]
    assert rows["db"] == ["should run, is exited"]
    assert rows["job"] == ["should be stopped"]
    assert rows["new"] == ["no container"]
    assert rows["gone"] == ["not in the target"]
