"""What the grant confirmation says follows the role table (`roles.SUPPORT_PERMISSIONS`)."""

from __future__ import annotations

from edgefleet.server import roles
from edgefleet.server.org_schemas import GrantCreate
from edgefleet.server.web import supporttext


def test_every_support_permission_is_said_and_reboot_only_when_allowed() -> None:
    assert set(supporttext.CAN_DO) == roles.SUPPORT_PERMISSIONS | {roles.GRANT_REBOOT}
    without = supporttext.can_do(allow_reboot=False)
    with_reboot = supporttext.can_do(allow_reboot=True)
    assert len(without) == len(roles.SUPPORT_PERMISSIONS)
    assert with_reboot == [*without, supporttext.CAN_DO[roles.GRANT_REBOOT]]
    assert "reboot" in supporttext.never(allow_reboot=False)
    assert "reboot" not in supporttext.never(allow_reboot=True)


def test_durations_read_as_words_and_fit_the_api() -> None:
    assert [supporttext.duration_text(s) for s, _ in supporttext.DURATIONS] == [
        label for _, label in supporttext.DURATIONS]
    assert supporttext.duration_text(90) == "90 seconds"
    assert supporttext.duration_text(60) == "1 minute"
    assert all(supporttext.MIN_S <= s <= supporttext.MAX_S for s, _ in supporttext.DURATIONS)
    bounds = {type(m).__name__: m for m in GrantCreate.model_fields["duration_s"].metadata}
    assert (bounds["Ge"].ge, bounds["Le"].le) == (supporttext.MIN_S, supporttext.MAX_S)
