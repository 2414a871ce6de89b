"""Removal: offline unlearning fine-tunes; their LoRA adapters are served as model versions."""

import json
from pathlib import Path

ACCELERATE_CONFIGS = Path(__file__).parent / "accelerate"
"""accelerate configs of removal jobs: cpu, gpu (one device), fsdp and deepspeed (a GPU node)."""
RETAIN_DEFAULT = Path(__file__).parent / "data" / "retain_world_facts.jsonl"
"""Retain data when the settings name none: world facts (TOFU's), one {question, answer} a line."""


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """The (question, answer) pairs of a JSONL file; ValueError saying what is wrong with it."""
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [(row["question"], row["answer"]) for row in rows]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not JSONL of {{question, answer}} rows ({exc!r})") from exc
