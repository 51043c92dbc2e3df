"""audit trail; login rate limit as counters

The login rate limit counted rows of `login_failure`; a count read by several logins at once
let them all through. It now reserves each attempt with one guarded UPDATE of a counter row
(`login_counter`), so `login_failure` goes: its rows only ever lived for the window.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 21:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import drayman.store.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_counter",
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=215), nullable=False),
        sa.Column("window_start", drayman.store.types.UtcDateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_login_counter")),
    )
    with op.batch_alter_table("login_counter", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_login_counter_window_start"), ["window_start"], unique=False
        )
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", drayman.store.types.UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=150), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("object_type", sa.String(length=20), nullable=False),
        sa.Column("object_id", sa.String(length=1000), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_event_action_created_at"), ["action", "created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_audit_event_actor_created_at"), ["actor", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_audit_event_created_at"), ["created_at"], unique=False)
    op.drop_table("login_failure")


def downgrade() -> None:
    op.create_table(
        "login_failure",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("created_at", drayman.store.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failure")),
    )
    with op.batch_alter_table("login_failure", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_login_failure_address_created_at"),
            ["address", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_login_failure_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_login_failure_username_created_at"),
            ["username", "created_at"],
            unique=False,
        )
    op.drop_table("audit_event")
    op.drop_table("login_counter")
