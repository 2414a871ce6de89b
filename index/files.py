"""Writing a file so that a reader, or a process killed half-way, sees the old one or the new one,
never a part (a temporary beside it, then a rename).

    write_json_atomic(run / "sequential.json", payload)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, payload: Any, indent: int | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=indent))
    tmp.replace(path)
