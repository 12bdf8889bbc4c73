"""Tags on devices, fleets and releases (balena's `device_tag`, `application_tag`,
`release_tag`): new tables only.

Revision ID: b20_tags
"""

import sqlalchemy as sa
from alembic import op

revision = 'b20_tags'
down_revision = 'r15_orgs'
TAGS = (('device_tags', 'device_id', 'devices'), ('fleet_tags', 'fleet_id', 'fleets'),
        ('release_tags', 'release_id', 'releases'))


def upgrade() -> None:
    for table, column, parent in TAGS:
        op.create_table(
            table,
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column(column, sa.Integer(), nullable=False),
            sa.Column('tag_key', sa.String(length=100), nullable=False),
            sa.Column('value', sa.Text(), nullable=False),
            sa.ForeignKeyConstraint([column], [f'{parent}.id'], ondelete='CASCADE'),
            sa.PrimaryKeyConstraint('id'),
            sa.UniqueConstraint(column, 'tag_key'))


def downgrade() -> None:
    for table, _column, _parent in TAGS:
        op.drop_table(table)
