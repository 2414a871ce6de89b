"""Alembic's entry point for the gateway's database (forget store + removal registry).

``index.schema.upgrade(engine)`` runs it at start-up, handing over its connection.
"""

from __future__ import annotations

from alembic import context

from index.store import Base as StoreBase

# One history for the whole database, written by hand (each script's op.* calls name its
# tables): the index's models only, so the index imports nothing above it (removal's tables
# are in 0001-0003 too).
target_metadata = StoreBase.metadata
connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
)
with context.begin_transaction():
    context.run_migrations()
