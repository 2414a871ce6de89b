"""Target and retain models: the base fine-tuned on forget + retain QA, and on retain QA only.

    obliviate-eval build-models --forget 1            # TOFU subset, 1 of 10 authors forgotten

The standard TOFU set-up: the *target* knows everything, the *retain model* never saw the forget
subjects, so it is the reference that forget quality is measured against. Models are saved as HF
folders under ``DATA_DIR/models/`` (servable with ``obliviate serve --model``), named by a hash of
(base, data, hyper-parameters): a second build with the same inputs reuses them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from evals.data import QA, Subject
from index.pairs import collate, encode

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 20
"""Steps between the checkpoints an interrupted fine-tune resumes from."""


@dataclass
class FinetuneConfig:
    """Full fine-tune on QA pairs; the loss covers answer tokens only."""

    epochs: int = 5
    """Passes over the QA pairs (35 steps of 8 reached 100% recall on 40 pairs here)."""
    batch_size: int = 8
    learning_rate: float = 1e-4
    """AdamW learning rate, constant after a short warm-up."""
    max_steps: int | None = None
    """Stop early after this many steps (tests, quick looks); None = all epochs."""
    seed: int = 0
    threads: int = 2
    """torch threads."""
    bf16: bool | None = None
    """bf16 autocast; None = only where the device computes bf16 natively (a CPU with AMX /
    AVX512-BF16, most GPUs). Elsewhere it is emulated and several times slower than fp32."""
    device: str = "cpu"
    """torch device to train on: "cuda" on a GPU (minutes instead of hours), "auto" picks it
    where one is present. Not part of the model's identity (its folder name)."""


def model_dir(data_dir: Path, base: Path, pairs: list[QA], config: FinetuneConfig) -> Path:
    # The resolved base: one folder whether the data dir was written relative or absolute.
    digest = hashlib.sha256(
        json.dumps(
            [
                str(base.resolve()),
                [(p.question, p.answer) for p in pairs],
                {k: v for k, v in asdict(config).items() if k != "device"},
            ],
            sort_keys=True,
        ).encode()
    ).hexdigest()
    return data_dir / "models" / f"finetuned-{digest[:16]}"


def finetune(base: Path, pairs: list[QA], out: Path, config: FinetuneConfig) -> Path:
    """Fine-tune ``base`` on ``pairs`` into ``out`` (skipped when ``out`` is complete).

    Every ``CHECKPOINT_EVERY`` steps the weights, optimiser and step are saved beside ``out``; a
    rerun after an interruption resumes from there and ends with the same weights.
    """
    if (out / "config.json").exists():
        log.info("reusing %s", out)
        return out
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu")
        if config.device == "auto"
        else config.device
    )
    if config.bf16 is not None:
        use_bf16 = config.bf16
    else:
        use_bf16 = torch.cuda.is_bf16_supported() if device.type == "cuda" else native_bf16()
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).to(device)
    model.train()
    examples = [encode(tokenizer, pair.question, pair.answer) for pair in pairs]
    batches = schedule_batches(len(examples), config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 5))
    partial = out.with_name(out.name + ".partial.pt")
    start = 0
    if partial.exists():
        state = torch.load(partial, weights_only=True, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start = state["step"]
        log.info("resuming %s at step %d", out.name, start)
    with tqdm(total=len(batches), initial=start, desc=f"fine-tune {out.name}", unit="step") as bar:
        for step in range(start, len(batches)):
            batch = [examples[i] for i in batches[step]]
            ids, mask, labels = (t.to(device) for t in collate(batch, tokenizer.pad_token_id))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            bar.set_postfix(loss=f"{loss.item():.3f}")
            bar.update()
            if (step + 1) % CHECKPOINT_EVERY == 0 and step + 1 < len(batches):
                state = {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "step": step + 1,
                }
                torch.save(state, partial.with_suffix(".tmp"))
                partial.with_suffix(".tmp").replace(partial)  # a kill mid-save keeps the last one
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(out)  # complete or absent, never half-written
    partial.unlink(missing_ok=True)
    return out


def schedule_batches(count: int, config: FinetuneConfig) -> list[list[int]]:
    """Example indices per step, fixed by the seed, so a resumed run takes the same ones."""
    order = random.Random(config.seed)
    per_epoch = -(-count // config.batch_size)
    total = config.max_steps or config.epochs * per_epoch
    batches: list[list[int]] = []
    while len(batches) < total:
        indices = list(range(count))
        order.shuffle(indices)
        batches += [indices[i : i + config.batch_size] for i in range(0, count, config.batch_size)]
    return batches[:total]


def native_bf16() -> bool:
    """Whether the CPU has bf16 matrix instructions (Linux: read from /proc/cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def build_model(
    data_dir: Path, base: Path, subjects: list[Subject], config: FinetuneConfig
) -> Path:
    """The base fine-tuned on the subjects' QA (reused when built before).

    Pairs are put in a canonical order first, so every split of the same data shares one target.
    """
    pairs = sorted((p for s in subjects for p in s.qa), key=lambda p: (p.question, p.answer))
    return finetune(base, pairs, model_dir(data_dir, base, pairs, config), config)


def build_models(
    data_dir: Path, base: Path, forget: list[Subject], retain: list[Subject], config: FinetuneConfig
) -> dict[str, Path]:
    """The target (forget + retain QA) and the retain model (retain QA only)."""
    return {
        "target": build_model(data_dir, base, forget + retain, config),
        "retain": build_model(data_dir, base, retain, config),
    }
