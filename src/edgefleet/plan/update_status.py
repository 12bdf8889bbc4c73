"""Each app's `update_status` (balena's values) from the plan and what held or failed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from edgefleet.model.service import DesiredState
from edgefleet.plan.steps import FetchImage, Noop, Plan, Wait


class Hold(Protocol):
    """An app whose download the update gate holds (device.update_gate.Hold)."""

    @property
    def status(self) -> str: ...

    @property
    def reason(self) -> str: ...

STATUSES = ("downloading", "downloaded", "applying changes", "done", "aborted", "rejected")


def app_statuses(*, desired: DesiredState, the_plan: Plan, holds: Mapping[str, Hold],
                 rejected: Mapping[str, str], fetch_errors: Mapping[str, str],
                 downloaded: frozenset[str] = frozenset()) -> dict[str, tuple[str, str]]:
    """App uuid → (update status, message).

    rejected: the target or release cannot run here (message says why); aborted: the update
    cannot proceed now (no space, a failed pull) and the current release keeps running;
    downloading: images are being pulled; downloaded: every image is here, nothing else to do
    but wait for an update lock; applying changes: containers are being changed or waited
    for (health, hand-over); done: converged."""
    out: dict[str, tuple[str, str]] = {}
    for app_uuid, app in desired.apps.items():
        steps = [s for s in the_plan.steps if s.app_uuid == app_uuid]
        noops = [s for s in steps if isinstance(s, Noop)]
        message = "; ".join(n.waiting_for for n in noops)
        refs = {s.image for s in app.services.values()}
        errors = "; ".join(f"{r}: {fetch_errors[r]}" for r in sorted(refs & set(fetch_errors)))
        hold = holds.get(app_uuid)
        if app_uuid in rejected:
            out[app_uuid] = ("rejected", rejected[app_uuid])
        elif hold is not None and hold.status == "rejected":
            out[app_uuid] = ("rejected", hold.reason)
        elif hold is not None:
            out[app_uuid] = ("aborted", hold.reason)
        elif app_uuid in downloaded:
            out[app_uuid] = ("downloaded", message)
        elif any(isinstance(s, FetchImage) for s in steps):
            out[app_uuid] = ("downloading", f"retrying after: {errors}" if errors else message)
        elif errors:
            out[app_uuid] = ("aborted", errors)
        elif steps and len(noops) == len(steps) and {n.why for n in noops} == {Wait.LOCKED}:
            out[app_uuid] = ("downloaded", message)
        elif steps:
            out[app_uuid] = ("applying changes", message)
        else:
            out[app_uuid] = ("done", "")
    return out
