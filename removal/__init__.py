"""Removal: offline unlearning fine-tunes; their LoRA adapters are served as model versions."""
