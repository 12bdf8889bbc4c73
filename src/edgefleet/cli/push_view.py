"""How `edgefleet push` shows a build: one line per build step, a progress row per service
(its step) and per layer being pushed (its bytes), and a line when each layer is done."""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.filesize import decimal
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn
from rich.text import Text

STEP = re.compile(r"^Step (\d+)/(\d+) : ")
# engine chatter that says nothing to a user: image ids between steps, cleanup
NOISE = (" ---> ", "Removing intermediate container", "Successfully built ", "Successfully tagged ")


class AmountColumn(ProgressColumn):
    """`3/6 steps` for a service being built, `1.2/2.0 MB` for a layer being pushed."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "")
        if task.total is None:
            return Text("")
        if unit == "bytes":
            return Text(f"{decimal(int(task.completed))}/{decimal(int(task.total))}")
        return Text(f"{int(task.completed)}/{int(task.total)} {unit}".rstrip())


class PushView:
    """Renders the server's push events (see the user API's `POST /fleets/{fleet}/releases`)."""

    def __init__(self, *, console: Console) -> None:
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 AmountColumn(), console=console)
        self.services: dict[str, Any] = {}
        self.layers: dict[tuple[str, str], Any] = {}
        self.pushed: dict[str, int] = {}

    def __enter__(self) -> PushView:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def say(self, *parts: str | tuple[str, str]) -> None:
        self.progress.console.print(Text.assemble(*parts), highlight=False)

    def handle(self, e: dict[str, Any]) -> None:
        """Show one event."""
        kind, svc = e.get("type"), str(e.get("service", ""))
        if kind == "release":
            self.say("release ", (str(e["commit"]), "bold"), ": ", ", ".join(e["services"]))
            for s in e["services"]:
                self.services[s] = self.progress.add_task(f"{s}: waiting", total=None,
                                                          unit="steps")
        elif kind == "status" and svc in self.services:
            self.progress.update(self.services[svc],
                                 description=f"{svc}: {e['message'].split()[0]}")
        elif kind == "build":
            self._build_line(svc, str(e["line"]))
        elif kind == "push":
            self._layer(svc, e)
        elif kind == "pushed":
            self._pushed(svc, str(e.get("digest") or ""))

    def _build_line(self, svc: str, line: str) -> None:
        if line.startswith(NOISE) or not line.strip():
            return
        self.say((svc, "dim"), " ", line)
        step = STEP.match(line)
        if step and svc in self.services:
            self.progress.update(self.services[svc], completed=int(step.group(1)),
                                 total=int(step.group(2)),
                                 description=f"{svc}: step {step.group(1)}/{step.group(2)}")

    def _layer(self, svc: str, e: dict[str, Any]) -> None:
        layer, status = str(e.get("layer", "")), str(e.get("status", "Pushing"))
        current, total = int(e.get("current") or 0), int(e.get("total") or 0)
        key = (svc, layer)
        if status == "Pushing":
            if key not in self.layers:
                self.layers[key] = self.progress.add_task(f"{svc}: layer {layer}", total=total,
                                                          unit="bytes")
            self.progress.update(self.layers[key], completed=current, total=total)
            return
        if key in self.layers:
            self.progress.remove_task(self.layers.pop(key))
        self.pushed[svc] = self.pushed.get(svc, 0) + total
        if status == "Pushed":
            self.say(f"{svc}: layer {layer} pushed ({decimal(total)})")
        else:
            self.say(f"{svc}: layer {layer} {status.lower()}")

    def _pushed(self, svc: str, digest: str) -> None:
        if svc in self.services:
            self.progress.remove_task(self.services.pop(svc))
        sent = self.pushed.get(svc, 0)
        self.say(f"{svc}: pushed {digest[:19]} "
                 + (f"({decimal(sent)} uploaded)" if sent else "(every layer was there)"))
