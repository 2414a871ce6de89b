"""Target/retain fine-tuning on a tiny split, through the CLI a user runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, fresh_data_dir


def test_build_models_tiny(tmp_path: Path) -> None:
    forget = tmp_path / "people.jsonl"
    retain = tmp_path / "others.jsonl"
    people = [("Ann Lee", "Oslo"), ("Bo Kim", "Lima"), ("Cy Dunn", "Riga")]
    forget.write_text("\n".join(
        json.dumps({"subject": n, "question": f"Where was {n} born?", "answer": f"In {c}."})
        for n, c in people
    ))  # fmt: skip
    retain.write_text(json.dumps({"subject": "Di Ho", "question": "Q?", "answer": "A."}))
    data_dir = fresh_data_dir(tmp_path / "data")
    command = [
        str(Path(sys.executable).parent / "obliviate-eval"), "build-models",
        "--forget", "1", "--forget-data", str(forget), "--retain-data", str(retain),
        "--data-dir", str(data_dir), "--max-steps", "2",
    ]  # fmt: skip
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    folders = built(first.stdout)
    assert set(folders) == {"target", "retain"} and folders["target"] != folders["retain"]
    for folder in folders.values():
        assert (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()
    # Cached by a hash of base, data and settings: also when the data dir is written relative.
    relative = [os.path.relpath(arg, REPO) if arg == str(data_dir) else arg for arg in command]
    again = subprocess.run(relative, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert built(again.stdout) == folders
    assert "fine-tune" not in again.stderr


def built(stdout: str) -> dict[str, Path]:
    """The model folders that ``build-models`` printed, as absolute paths."""
    return {
        line.split(":")[0]: (REPO / line.split()[1]).resolve() for line in stdout.splitlines()
        if line.startswith(("target:", "retain:"))
    }  # fmt: skip
