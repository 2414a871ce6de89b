"""The database schema, migrated with Alembic (``index/migrations``): SQLite or PostgreSQL.

    >>> engine = create_engine("sqlite:///:memory:")
    >>> upgrade(engine)            # creates or migrates every table; safe to run on each start

A database made before migrations existed (tables, no ``alembic_version``) is stamped with the
first revision, which is that schema, and then upgraded.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect

MIGRATIONS = Path(__file__).parent / "migrations"
FIRST = "0001"


def alembic_config(connection: object) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine) -> None:
    with engine.begin() as connection:
        config = alembic_config(connection)
        tables = set(inspect(connection).get_table_names())
        if "forget_requests" in tables and "alembic_version" not in tables:
            command.stamp(config, FIRST)
        command.upgrade(config, "head")
