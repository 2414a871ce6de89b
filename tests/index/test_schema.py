"""One migration history with a branch per package that owns tables (index, removal, the
gateway's evidence)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, inspect, text

from index.schema import alembic_config, upgrade, version_locations
from index.store import ForgetStore

HEADS = {"index_0003", "removal_0003", "evidence_0001"}


def heads(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return {row[0] for row in connection.execute(text("SELECT * FROM alembic_version"))}


def test_each_package_keeps_its_own_scripts() -> None:
    assert [path.relative_to(Path.cwd()).as_posix() for path in version_locations()] == [
        "index/migrations/versions",
        "gateway/evidence/migrations/versions",
        "removal/migrations/versions",
    ]


def test_every_packages_tables_are_made_once(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'db'}")
    upgrade(engine)
    upgrade(engine)  # the next start: nothing to do
    assert heads(engine) == HEADS
    assert {"forget_requests", "chunks", "changes", "removal_jobs", "model_versions",
            "routing", "evidence"} <= set(inspect(engine).get_table_names())  # fmt: skip


@pytest.mark.parametrize("unsplit", ["0001", "0002", "0003"])
def test_a_database_of_the_unsplit_history_is_carried_over(unsplit: str, tmp_path: Path) -> None:
    """Before the split one branch held every table (0001: all four, 0002: changes and leases,
    0003: routing): such a database is restamped onto the branches and upgraded."""
    url = f"sqlite:///{tmp_path / 'db'}"
    engine = create_engine(url)
    made_by = {"0001": ("index_0001", "removal_0001"), "0002": ("index_0002", "removal_0002"),
               "0003": ("index_0002", "removal_0003")}[unsplit]  # fmt: skip
    with engine.begin() as connection:
        for head in made_by:
            command.upgrade(alembic_config(connection), head)
        connection.execute(text("DELETE FROM alembic_version"))
        connection.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": unsplit})
    store = ForgetStore(url)
    request, _ = store.create({"subject": "Ann Lee"}, [])
    upgrade(create_engine(url))
    assert heads(engine) == HEADS
    assert {"lease_owner"} <= {c["name"] for c in inspect(engine).get_columns("removal_jobs")}
    assert ForgetStore(url).get(request.id).subject == "Ann Lee"
