"""callback claims: dag_run.callback_claimed_at

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 21:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import drayman.store.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dag_run", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("callback_claimed_at", drayman.store.types.UtcDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("dag_run", schema=None) as batch_op:
        batch_op.drop_column("callback_claimed_at")
