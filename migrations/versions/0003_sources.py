"""configured sources; mirrored rows keyed by (source, upstream id)

Existing rows belong to the source configured from environment variables, whose name is the one its
bookmarks and runs already carry (``woocommerce-products``, ``odoo-suppliers``): every row, cursor and
run is kept as it is.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("options", JSON, nullable=False),
        sa.Column("credentials", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("incremental_interval_seconds", sa.Float(), nullable=True),
        sa.Column("full_cron", sa.String(length=100), nullable=True),
        sa.Column("page_size", sa.Integer(), nullable=True),
        sa.Column("concurrency", sa.Integer(), nullable=True),
        sa.Column("breaker", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sources")),
        sa.UniqueConstraint("name", name=op.f("uq_sources_name")),
    )
    _key_by_source("products", "woo_id", "woocommerce-products", parent="parent_woo_id")
    _key_by_source("suppliers", "odoo_id", "odoo-suppliers", parent=None)


def _key_by_source(table: str, key: str, existing: str, parent: str | None) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=64), server_default=existing, nullable=False)
        )
    with op.batch_alter_table(table, schema=None) as batch_op:
        # The default only names the rows that existed; every new row states its source.
        batch_op.alter_column("source", server_default=None)
        batch_op.drop_constraint(f"uq_{table}_{key}", type_="unique")
        batch_op.create_unique_constraint(f"uq_{table}_source_{key}", ["source", key])
        if parent is not None:
            batch_op.drop_index(f"ix_{table}_{parent}")
            batch_op.create_index(f"ix_{table}_source_parent", ["source", parent], unique=False)


def _unkey(table: str, key: str, parent: str | None) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        if parent is not None:
            batch_op.drop_index(f"ix_{table}_source_parent")
            batch_op.create_index(f"ix_{table}_{parent}", [parent], unique=False)
        batch_op.drop_constraint(f"uq_{table}_source_{key}", type_="unique")
        batch_op.create_unique_constraint(f"uq_{table}_{key}", [key])
        batch_op.drop_column("source")


def downgrade() -> None:
    # Only a database holding the environment's sources alone can go back: other sources' rows would
    # collide on the key, or silently become the environment's source's rows.
    for table, existing in (("products", "woocommerce-products"), ("suppliers", "odoo-suppliers")):
        rows = sa.table(table, sa.column("source"))
        others = op.get_bind().execute(
            sa.select(sa.func.count()).select_from(rows).where(rows.c.source != existing)
        )
        if others.scalar_one():
            msg = (
                f"cannot downgrade: {table} holds rows of sources other than {existing!r}; remove them first"
            )
            raise RuntimeError(msg)
    _unkey("suppliers", "odoo_id", None)
    _unkey("products", "woo_id", "parent_woo_id")
    op.drop_table("sources")
