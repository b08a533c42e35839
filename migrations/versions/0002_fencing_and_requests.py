"""fencing tokens, request numbers and resumable reconciliation

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fence", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("requests", sa.BigInteger(), server_default="0", nullable=False))
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fence", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("serves_through", sa.BigInteger(), nullable=True))
        batch_op.create_index("ix_sync_runs_source_serves", ["source", "serves_through"], unique=False)
    op.create_table(
        "sync_reconcile_ids",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("source", "id", name=op.f("pk_sync_reconcile_ids")),
    )


def downgrade() -> None:
    op.drop_table("sync_reconcile_ids")
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_runs_source_serves")
        batch_op.drop_column("serves_through")
        batch_op.drop_column("fence")
    with op.batch_alter_table("sync_state", schema=None) as batch_op:
        batch_op.drop_column("requests")
        batch_op.drop_column("fence")
