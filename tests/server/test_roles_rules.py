"""Issue 15 §3: actions that stop something need a confirmation, and from a support agent a
note; reboot by support only where the grant allows it."""

from __future__ import annotations

import pytest

from edgefleet.server import roles


@pytest.mark.parametrize("action", sorted(roles.STOPPING_ACTIONS))
def test_stopping_actions_need_confirmation_and_support_a_note(action: str) -> None:
    assert roles.action_refusal(action, confirmed=False, note=None, is_support=False)
    assert roles.action_refusal(action, confirmed=True, note=None, is_support=False) is None
    assert "note" in (roles.action_refusal(action, confirmed=True, note="  ",
                                           is_support=True) or "")
    assert roles.action_refusal(action, confirmed=True, note="disk full, asked alice",
                                is_support=True) is None


def test_restarting_a_service_needs_neither() -> None:
    assert roles.action_refusal("restart-service", confirmed=False, note=None,
                                is_support=True) is None
    assert roles.action_permission("restart-service") == "service.restart"


def test_reboot_by_support_only_with_the_grant_allowing_it() -> None:
    perm = roles.action_permission("reboot")
    assert not roles.support_allows(perm, allow_reboot=False)
    assert roles.support_allows(perm, allow_reboot=True)
    assert roles.role_allows("operator", perm) and not roles.role_allows("viewer", perm)
    for action in ("shutdown", "purge", "stop-service", "restart-supervisor"):
        assert not roles.support_allows(roles.action_permission(action), allow_reboot=True)
