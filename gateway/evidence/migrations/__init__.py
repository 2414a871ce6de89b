"""The evidence tables migrate in the database's one history (see ``index.schema``)."""

from pathlib import Path

VERSIONS = Path(__file__).parent / "versions"
