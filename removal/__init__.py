"""Removal: offline unlearning fine-tunes; their LoRA adapters are served as model versions."""

from pathlib import Path

ACCELERATE_CONFIGS = Path(__file__).parent / "accelerate"
"""accelerate configs of removal jobs: cpu, gpu (one device), fsdp and deepspeed (a GPU node)."""
