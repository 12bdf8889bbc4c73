"""What the two stateful schemathesis tests (fleet server, device supervisor) share."""

from __future__ import annotations

from typing import Any


def note_server_error(errors: list[str], response: Any, case: Any) -> None:
    """Record a call that answered 5xx, with what was sent and what came back."""
    if response.status_code >= 500:
        errors.append(f"{case.method} {case.formatted_path} {case.query} "
                      f"{str(case.body)[:300]} -> {response.status_code} "
                      f"{response.text[:300]}")
