"""Target/retain fine-tuning on a tiny split, through the CLI a user runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from evals import build_models
from evals.build_models import FinetuneConfig, finetune
from evals.data import QA
from tests.conftest import REPO, fresh_data_dir, tiny_llama


def test_build_models_tiny(tmp_path: Path) -> None:
    forget = tmp_path / "people.jsonl"
    retain = tmp_path / "others.jsonl"
    people = [("Ann Lee", "Oslo"), ("Bo Kim", "Lima"), ("Cy Dunn", "Riga")]
    forget.write_text("\n".join(
        json.dumps({"subject": n, "question": f"Where was {n} born?", "answer": f"In {c}."})
        for n, c in people
    ))  # fmt: skip
    retain.write_text(json.dumps({"subject": "Di Ho", "question": "Q?", "answer": "A."}))
    more = tmp_path / "hard_negatives.jsonl"  # --retain-data repeats (TOFU's + hard negatives)
    more.write_text(json.dumps({"subject": "Ann Moe", "question": "Q?", "answer": "B."}))
    data_dir = fresh_data_dir(tmp_path / "data")
    command = [
        str(Path(sys.executable).parent / "obliviate-eval"), "build-models",
        "--forget", "1", "--forget-data", str(forget), "--retain-data", str(retain),
        "--retain-data", str(more), "--data-dir", str(data_dir), "--max-steps", "2",
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


def test_an_interrupted_fine_tune_resumes_to_the_same_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tiny_llama(tmp_path / "base")
    pairs = [QA(f"Where was person {i} born?", f"In town {i}.") for i in range(6)]
    config = FinetuneConfig(batch_size=2, max_steps=5, threads=1)
    monkeypatch.setattr(build_models, "CHECKPOINT_EVERY", 2)
    straight = finetune(base, pairs, tmp_path / "straight", config)

    collate, calls = build_models.collate, []

    def counted(*args: object) -> object:
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # as a session that ends mid-step
        return collate(*args)

    monkeypatch.setattr(build_models, "collate", counted)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        finetune(base, pairs, out, config)
    assert not out.exists() and torch.load(out.with_name("resumed.partial.pt"))["step"] == 2
    calls[:] = [1] * 4  # no second interruption
    finetune(base, pairs, out, config)
    assert len(calls) == 4 + 3  # steps 3 to 5 only
    assert not out.with_name("resumed.partial.pt").exists()
    expected, resumed = (load_file(d / "model.safetensors") for d in (straight, out))
    assert expected.keys() == resumed.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(resumed[name], tensor, msg=name)
