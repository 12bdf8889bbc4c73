"""Issue 15 §3: actions that stop something need a confirmation, and from a support agent a
note; reboot by support only where the grant allows it."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from edgefleet.model.timeutil import now_ms
from edgefleet.server import audit, roles
from edgefleet.server import org_tables as o
from edgefleet.server.db import Database


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


def test_audit_retention_removes_old_records_only(tmp_path: Path) -> None:
    db = Database(url=f"sqlite:///{tmp_path}/a.sqlite")
    try:
        with db.session() as s:
            audit.record(s, actor="a", action="old", target="x")
            audit.record(s, actor="a", action="new", target="x")
            s.flush()
            s.execute(sa.update(o.AuditEvent).where(o.AuditEvent.action == "old")
                      .values(ts_ms=now_ms() - 3 * 86_400_000))
            assert audit.trim(s, retention_days=2) == 1
            assert [r.action for r in audit.query(s, organizations=None)] == ["new"]
    finally:
        db.close()


def test_secret_looking_variable_values_are_redacted() -> None:
    for name in ("DB_PASSWORD", "API_KEY_2", "deviceApiKey", "WIFI_PSK", "GITHUB_TOKEN"):
        assert audit.variable_value(name, "s3cret") == "[REDACTED]"
    assert audit.variable_value("MODE", "prod") == "prod"
