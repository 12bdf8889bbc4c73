"""The supervisor process skips modules it never uses (issue 4: RSS under 60 MB), and the
libraries that import them still work."""

from __future__ import annotations

import json
import subprocess
import sys

CODE = r"""
import json, sys
from edgefleet.cli.lean import skip_unused_imports
blocked = skip_unused_imports()
import edgefleet.cli.supervisor_cmd, edgefleet.cli.diagnostics_wiring
import edgefleet.device.runtime, edgefleet.device.api.app, edgefleet.device.api.server
import edgefleet.device.link
import fastapi, httpx, pydantic, uvicorn
from fastapi.testclient import TestClient

class Body(pydantic.BaseModel):
    n: int

app = fastapi.FastAPI()

@app.post("/echo")
def echo(body: Body) -> dict[str, int]:
    return {"n": body.n}

client = TestClient(app)
uvicorn.Config(app=app, reload=False)
print(json.dumps({
    "blocked": blocked,
    "ok": client.post("/echo", json={"n": 3}).json(),
    "bad": client.post("/echo", json={"n": "x"}).status_code,
    "loaded": sorted(m for m in ("rich", "pygments", "yaml", "pydantic.v1", "watchfiles",
                                 "sqlalchemy", "jinja2") if sys.modules.get(m)),
}))
"""


def test_the_supervisor_process_skips_unused_modules_and_its_libraries_still_work() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["blocked"] == ["httpx._main", "pydantic.v1", "watchfiles"]
    assert result["ok"] == {"n": 3}
    assert result["bad"] == 422
    assert result["loaded"] == []


def test_a_module_already_loaded_is_left_alone() -> None:
    code = ("import sys, pydantic.v1; from edgefleet.cli.lean import skip_unused_imports; "
            "print(skip_unused_imports(), sys.modules['pydantic.v1'] is not None)")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    assert out.split() == ["['httpx._main',", "'watchfiles']", "True"]


def test_the_cli_blocks_them_at_process_start_for_supervisor_run_only() -> None:
    code = ("import sys; from edgefleet.cli import main; sys.argv = ['edgefleet'] + sys.argv[1:]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('httpx._main', 'pydantic.v1', 'watchfiles')"
            " if m in sys.modules and sys.modules[m] is None))")
    run = subprocess.run([sys.executable, "-c", code, "supervisor", "run", "--help"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert run.splitlines()[-1] == "['httpx._main', 'pydantic.v1', 'watchfiles']"
    other = subprocess.run([sys.executable, "-c", code, "supervisor", "status", "--help"],
                           capture_output=True, text=True, check=True, timeout=60).stdout
    assert other.splitlines()[-1] == "[]"
