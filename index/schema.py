"""The database schema, migrated with Alembic: SQLite or PostgreSQL.

    >>> engine = create_engine("sqlite:///:memory:")
    >>> upgrade(engine)            # creates or migrates every table; safe to run on each start

One history in one ``alembic_version`` table, with a branch per package that owns tables: each
package keeps its scripts beside its models (``index/migrations/versions``,
``removal/migrations/versions``) and names that folder in the ``obliviate.migrations`` entry
point group, so the index migrates every installed package's tables without importing their code.

Databases from before the split, whose one history held every table, are restamped onto the
branches; one made before migrations existed (tables, no ``alembic_version``) is stamped with
the first revisions, which are that schema, and then upgraded.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, inspect, text

MIGRATIONS = Path(__file__).parent / "migrations"
ENTRY_POINTS = "obliviate.migrations"
FIRST = ("index_0001", "removal_0001")
"""The schema before migrations existed."""
UNSPLIT = {
    "0001": FIRST,
    "0002": ("index_0002", "removal_0002"),
    "0003": ("index_0002", "removal_0003"),
}
"""Revisions of the one-branch history (index and removal tables together), as branch heads."""


def version_locations() -> list[Path]:
    """The index's scripts and every installed package's (its entry point names the folder)."""
    found = {Path(str(point.load())) for point in entry_points(group=ENTRY_POINTS)}
    return [MIGRATIONS / "versions", *sorted(found - {MIGRATIONS / "versions"})]


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Alembic splits this option on the separator it is told, not on a default.
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(map(str, version_locations())))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine) -> None:
    with engine.begin() as connection:
        config = alembic_config(connection)
        tables = set(inspect(connection).get_table_names())
        if "forget_requests" in tables and "alembic_version" not in tables:
            command.stamp(config, list(FIRST))
        elif "alembic_version" in tables:
            _restamp_unsplit(connection)
        command.upgrade(config, "heads")


def _restamp_unsplit(connection: Connection) -> None:
    rows = [row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))]
    if len(rows) == 1 and rows[0] in UNSPLIT:
        connection.execute(text("DELETE FROM alembic_version"))
        for head in UNSPLIT[rows[0]]:
            connection.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": head})
