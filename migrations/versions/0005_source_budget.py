"""a per-source request budget override on sources

Like ``breaker``: the fields of the kind's request budget (``BudgetSettings``) that differ for one
source. Every existing source overrides nothing (``{}``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("sources", schema=None) as batch_op:
        # The default stays (unlike breaker's): a CLI of the previous release, still adding sources
        # during a rolling upgrade, names no budget.
        batch_op.add_column(sa.Column("budget", JSON, server_default=sa.text("'{}'"), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.drop_column("budget")
