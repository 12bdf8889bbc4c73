"""Intents waiting for the planner, and what became of them once a round ran them."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from enum import StrEnum

from edgefleet.plan.intents import Intent
from edgefleet.plan.steps import Noop, Plan

LOCKED_AT_RUN = "Updates are locked, retrying"
"""The executor's error for a step whose app took its lock after the plan was made."""


class Outcome(StrEnum):
    DONE = "done"
    LOCKED = "locked"
    FAILED = "failed"


@dataclass(frozen=True)
class IntentResult:
    """What a round did with an intent: step ids done, failed or tolerated (best effort)."""

    outcome: Outcome
    error: str = ""
    done: tuple[str, ...] = ()
    tolerated: tuple[str, ...] = ()
    steps: dict[str, str] = field(default_factory=dict)
    """Step id -> the name it acted on (container, volume)."""


class IntentQueue:
    """Intents recorded by the API, each with a future its caller awaits."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[Intent, asyncio.Future[IntentResult]]] = {}
        self._ids = itertools.count(1)

    def new_id(self, kind: str) -> str:
        return f"{kind}#{next(self._ids)}"

    def add(self, intent: Intent) -> asyncio.Future[IntentResult]:
        future: asyncio.Future[IntentResult] = asyncio.get_running_loop().create_future()
        self._pending[intent.id] = (intent, future)
        return future

    def snapshot(self) -> tuple[Intent, ...]:
        """The intents the next plan carries out."""
        return tuple(i for i, f in self._pending.values() if not f.done())

    def resolve(self, *, intents: tuple[Intent, ...], the_plan: Plan, done: list[str],
                failed: dict[str, str], tolerated: dict[str, str]) -> list[Intent]:
        """Settle the futures of `intents` after `the_plan` ran; returns those done."""
        ok: list[Intent] = []
        for intent in intents:
            steps = [s for s in the_plan.steps if s.intent == intent.id]
            names = {s.id: str(getattr(s, "name", "") or getattr(s, "container", ""))
                     for s in steps}
            errors = [failed[s.id] for s in steps if s.id in failed]
            if any(isinstance(s, Noop) for s in steps) or LOCKED_AT_RUN in errors:
                result = IntentResult(Outcome.LOCKED)
            elif errors or any(s.id not in done and s.id not in tolerated for s in steps):
                result = IntentResult(Outcome.FAILED, error="; ".join(errors) or "not run")
            else:
                result = IntentResult(Outcome.DONE, done=tuple(s.id for s in steps
                                                               if s.id in done),
                                      tolerated=tuple(s.id for s in steps if s.id in tolerated),
                                      steps=names)
                ok.append(intent)
            self._settle(intent.id, result)
        return ok

    def fail(self, intents: tuple[Intent, ...], error: str) -> None:
        """The round stopped before running them (the engine did not answer)."""
        for intent in intents:
            self._settle(intent.id, IntentResult(Outcome.FAILED, error=error))

    def _settle(self, intent_id: str, result: IntentResult) -> None:
        entry = self._pending.pop(intent_id, None)
        if entry is not None and not entry[1].done():
            entry[1].set_result(result)
