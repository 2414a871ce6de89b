"""Alembic's entry point for the gateway's database: every package's tables, one history.

``index.schema.upgrade(engine)`` runs it at start-up, handing over its connection.
"""

from __future__ import annotations

from alembic import context

# Scripts are written by hand, each in the package that owns its tables (no autogenerate,
# which would need every package's models here).
connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
)
with context.begin_transaction():
    context.run_migrations()
