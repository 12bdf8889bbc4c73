"""How `edgefleet push` shows a build on a terminal: a line per build step, live bars per
layer in bytes, a line per finished layer; never raw markup or a `1/1 bytes` bar."""

from __future__ import annotations

import io

from rich.console import Console

from edgefleet.cli.push_view import PushView

EVENTS = [
    {"type": "release", "commit": "c0ffee", "services": ["web"]},
    {"type": "status", "service": "web", "message": "building web"},
    {"type": "build", "service": "web", "line": "Step 1/2 : FROM scratch"},
    {"type": "build", "service": "web", "line": " ---> 3d409414c8ec"},
    {"type": "build", "service": "web", "line": "Step 2/2 : COPY [app] /app"},
    {"type": "status", "service": "web", "message": "pushing 127.0.0.1:5000/f/web:c0ffee"},
    {"type": "push", "service": "web", "layer": "1221857520be", "status": "Pushing",
     "current": 33792, "total": 1982256},
    {"type": "push", "service": "web", "layer": "9e2834f25049",
     "status": "Layer already exists", "current": 0, "total": 0},
    {"type": "push", "service": "web", "layer": "1221857520be", "status": "Pushing",
     "current": 1982256, "total": 1982256},
    {"type": "push", "service": "web", "layer": "1221857520be", "status": "Pushed",
     "current": 1982256, "total": 1982256},
    {"type": "pushed", "service": "web", "digest": "sha256:8f585a411b3e8596"},
]


def test_steps_and_layers_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    with PushView(console=console) as view:
        for e in EVENTS:
            view.handle(e)
    text = out.getvalue()
    assert "web Step 1/2 : FROM scratch" in text
    assert "web Step 2/2 : COPY [app] /app" in text, "build lines are text, not markup"
    assert "3d409414c8ec" not in text and "[dim]" not in text
    assert "web: layer 9e2834f25049 layer already exists" in text
    assert "web: layer 1221857520be pushed (2.0 MB)" in text
    assert "web: pushed sha256:8f585a411b3e (2.0 MB uploaded)" in text
    assert "/2.0 MB" in text, "a live bar in bytes"
    assert "1/1 bytes" not in text
