"""Alembic's environment for the whole database, and the index's own scripts (``versions``)."""

from pathlib import Path

VERSIONS = Path(__file__).parent / "versions"
