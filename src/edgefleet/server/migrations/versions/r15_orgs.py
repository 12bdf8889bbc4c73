"""Organizations, members, support grants, device notes, audit trail, token expiry and scope.

Every existing user gets a personal organization (handle = username) in which they are owner,
and each fleet moves into its owner's personal organization: nothing is dropped or rewritten.
The remote sessions of `t14_tunnel_audit` (`tunnel_sessions`) move into the one audit trail
(`audit_events`, action `remote.<kind>`), every field kept.

Revision ID: r15_orgs
"""

import json
import re
import time

import sqlalchemy as sa
from alembic import op

revision = 'r15_orgs'
down_revision = 'd16_dashboard'


def upgrade() -> None:
    op.create_table(
        'organizations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('handle', sa.String(length=64), nullable=False),
        sa.Column('personal_of', sa.Integer(), nullable=True),
        sa.Column('created_ms', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['personal_of'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('handle'),
        sa.UniqueConstraint('personal_of'))
    op.create_table(
        'members',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('fleet_id', sa.Integer(), nullable=True),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('created_ms', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['fleet_id'], ['fleets.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_members_user', 'members', ['user_id', 'organization_id'])
    op.create_table(
        'support_grants',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('fleet_id', sa.Integer(), nullable=False),
        sa.Column('device_id', sa.Integer(), nullable=True),
        sa.Column('allow_reboot', sa.Boolean(), nullable=False),
        sa.Column('created_by', sa.String(length=64), nullable=False),
        sa.Column('created_ms', sa.BigInteger(), nullable=False),
        sa.Column('expires_ms', sa.BigInteger(), nullable=False),
        sa.Column('revoked_ms', sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['fleet_id'], ['fleets.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_support_grants_organization_id', 'support_grants', ['organization_id'])
    op.create_index('ix_support_grants_fleet_id', 'support_grants', ['fleet_id'])
    op.create_table(
        'audit_events',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('ts_ms', sa.BigInteger(), nullable=False),
        sa.Column('actor', sa.String(length=64), nullable=False),
        sa.Column('organization', sa.String(length=64), nullable=False),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('fleet', sa.String(length=128), nullable=False),
        sa.Column('device', sa.String(length=64), nullable=False),
        sa.Column('target', sa.String(length=255), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('id'))
    for name, cols in (('ix_audit_ts', ['ts_ms']), ('ix_audit_device', ['device', 'ts_ms']),
                       ('ix_audit_fleet', ['fleet', 'ts_ms']),
                       ('ix_audit_actor', ['actor', 'ts_ms'])):
        op.create_index(name, 'audit_events', cols)
    # plain ADD COLUMN: a batch (copy) of `fleets` would cascade-delete devices on SQLite
    op.add_column('users', sa.Column('is_support', sa.Boolean(), nullable=False,
                                     server_default=sa.false()))
    op.add_column('api_keys', sa.Column('expires_ms', sa.BigInteger(), nullable=True))
    op.add_column('api_keys', sa.Column('scope', sa.String(length=8), nullable=False,
                                        server_default='full'))
    op.add_column('fleets', sa.Column('organization_id', sa.Integer(), nullable=True))
    op.create_index('ix_fleets_organization_id', 'fleets', ['organization_id'])
    personal_organizations()
    fold_tunnel_sessions()


def personal_organizations() -> None:
    """A personal organization per user, owner of it, holding the user's fleets."""
    conn = op.get_bind()
    now = int(time.time() * 1000)
    users = conn.execute(sa.text("SELECT id, username FROM users ORDER BY id")).all()
    for user_id, username in users:
        conn.execute(sa.text("INSERT INTO organizations (handle, personal_of, created_ms) "
                             "VALUES (:h, :u, :now)"), {"h": username, "u": user_id, "now": now})
        org_id = conn.execute(sa.text("SELECT id FROM organizations WHERE personal_of = :u"),
                              {"u": user_id}).scalar_one()
        conn.execute(sa.text("INSERT INTO members (organization_id, user_id, fleet_id, role, "
                             "created_ms) VALUES (:o, :u, NULL, 'owner', :now)"),
                     {"o": org_id, "u": user_id, "now": now})
        conn.execute(sa.text("UPDATE fleets SET organization_id = :o WHERE owner_id = :u"),
                     {"o": org_id, "u": user_id})


def fold_tunnel_sessions() -> None:
    """Each tunnel session becomes an audit record; then `tunnel_sessions` goes."""
    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT s.id, s.username, s.device_uuid, s.kind, s.target, s.command, s.started_ms, "
        "s.ended_ms, s.bytes_up, s.bytes_down, s.result, f.name, o.handle "
        "FROM tunnel_sessions s LEFT JOIN devices d ON d.uuid = s.device_uuid "
        "LEFT JOIN fleets f ON f.id = d.fleet_id "
        "LEFT JOIN organizations o ON o.id = f.organization_id ORDER BY s.id")).all()
    for (_id, user, device, kind, target, command, started, ended, up, down, result, fleet,
         org) in rows:
        detail = {"command": command, "ended_ms": ended, "bytes_up": up, "bytes_down": down,
                  "result": result}
        outcome = "open" if ended is None else remote_outcome(result)
        conn.execute(sa.text(
            "INSERT INTO audit_events (ts_ms, actor, organization, action, fleet, device, "
            "target, outcome, detail) VALUES (:ts, :actor, :org, :action, :fleet, :device, "
            ":target, :outcome, :detail)"),
            {"ts": started, "actor": user, "org": org or "", "action": f"remote.{kind}",
             "fleet": fleet or "", "device": device, "target": target, "outcome": outcome,
             "detail": json.dumps(detail, sort_keys=True)})
    op.drop_index('ix_tunnel_sessions_device', table_name='tunnel_sessions')
    op.drop_table('tunnel_sessions')


def remote_outcome(result: str) -> str:
    """`ok` for a session that ended normally (closed, exit 0, HTTP 2xx/3xx), else `failed`."""
    if result in ("closed", "exit 0") or re.fullmatch(r"HTTP [23]\d\d", result or ""):
        return "ok"
    return "failed"


def downgrade() -> None:
    op.drop_index('ix_fleets_organization_id', 'fleets')
    for table, column in (('fleets', 'organization_id'), ('api_keys', 'scope'),
                          ('api_keys', 'expires_ms'), ('users', 'is_support')):
        op.drop_column(table, column)
    for table in ('audit_events', 'support_grants', 'members',
                  'organizations'):
        op.drop_table(table)
    op.create_table('tunnel_sessions',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('user_id', sa.Integer(), nullable=True),
                    sa.Column('username', sa.String(length=64), nullable=False),
                    sa.Column('device_uuid', sa.String(length=64), nullable=False),
                    sa.Column('kind', sa.String(length=16), nullable=False),
                    sa.Column('target', sa.String(length=255), nullable=False),
                    sa.Column('command', sa.Text(), nullable=False),
                    sa.Column('started_ms', sa.BigInteger(), nullable=False),
                    sa.Column('ended_ms', sa.BigInteger(), nullable=True),
                    sa.Column('bytes_up', sa.BigInteger(), nullable=False),
                    sa.Column('bytes_down', sa.BigInteger(), nullable=False),
                    sa.Column('result', sa.Text(), nullable=False),
                    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='SET NULL'),
                    sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_tunnel_sessions_device', 'tunnel_sessions', ['device_uuid', 'id'])
