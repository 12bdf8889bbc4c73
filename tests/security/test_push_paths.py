"""Finding 3 of issue 11: `build.dockerfile` and `build.context` must name something inside
the pushed project. A path outside gets the same 400 whether or not it exists on the server,
so a push cannot probe the server's files (nor send a `*.template` from outside to the engine)."""

from __future__ import annotations

import tarfile

import pytest
import yaml

from tests.security import hostile
from tests.security.conftest import SecServer, push_raw


def _compose(build: dict[str, str]) -> bytes:
    doc = {"services": {"web": {"build": build}}}
    return hostile.tar_of([("docker-compose.yml", yaml.safe_dump(doc).encode(),
                            tarfile.REGTYPE, ""),
                           ("app", b"", tarfile.DIRTYPE, ""),
                           ("app/Dockerfile", hostile.DOCKERFILE, tarfile.REGTYPE, "")])


def _detail(server: SecServer, build: dict[str, str], path: str) -> str:
    r = push_raw(server, _compose(build))
    assert r.status_code == 400, (build, r.status_code, r.text[:300])
    detail = str(r.json()["detail"])
    assert str(server.data_dir) not in detail
    return detail.replace(path, "<PATH>")


@pytest.mark.parametrize(("key", "exists", "missing", "context"), [
    ("dockerfile", "{victim}", "{box}/no-such-file", "."),
    ("dockerfile", "../../../victim.txt", "../../../no-such-file", "."),
    ("dockerfile", "../../../../victim.txt", "../../../../no-such-file", "app"),
    ("dockerfile", "{box}/tmpl.Dockerfile.template", "{box}/none.Dockerfile.template", "."),
    ("context", "{box}/neighbour", "{box}/no-such-dir", ""),
    ("context", "../../../neighbour", "../../../no-such-dir", ""),
])
def test_build_paths_outside_the_project_are_refused_alike(
        secserver: SecServer, key: str, exists: str, missing: str, context: str) -> None:
    box = secserver.box
    (box / "tmpl.Dockerfile.template").write_text("FROM scratch\n")
    try:
        answers = []
        for template in (exists, missing):
            path = template.format(box=box, victim=box / "victim.txt")
            build = {key: path} if key == "context" else {"context": context, key: path}
            answers.append(_detail(secserver, build, path))
        assert answers[0] == answers[1]
        assert "inside the project" in answers[0]
    finally:
        (box / "tmpl.Dockerfile.template").unlink()
    assert secserver.push_workdirs() == []
