"""One removal run: train a LoRA adapter with a method, on top of the parent version's weights.

    result = train(TrainSpec(method="npo", params={"steps": 30}, base_model=..., forget=[...],
                             retain=[...], output="DATA/versions/v-1"), on_progress=print)

The parent version's adapter is merged into the base first, so the new method's reference is the
weights being replaced; the saved adapter is parent + new update in one LoRA (their factors
concatenated: exact, and still servable on the *base* model by vLLM). Ranks add up along a
chain; past ``max_rank`` (vLLM's limit) the chain is consolidated: each module's merged update
is re-factored to that rank by SVD (exact while the update's true rank fits, else the nearest
update of that rank), and the error is recorded in the version's metrics. Saving goes through a
temporary folder and a rename, so a version folder is complete or absent.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from index.pairs import Pair
from removal.methods import METHODS, Method, MethodConfig

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class TrainSpec:
    """Everything a run needs; the gateway writes it as JSON for the worker process."""

    method: str
    base_model: str
    forget: list[Pair]
    retain: list[Pair]
    output: str
    params: dict[str, Any] = field(default_factory=dict)
    parent_adapter: str | None = None
    threads: int = 1
    max_rank: int | None = None
    """The served LoRA rank limit: a chain past it is consolidated to it (None: no limit)."""


@dataclass
class Progress:
    step: int
    total: int
    loss: float
    eta_s: float


def method_config(name: str, params: dict[str, Any]) -> MethodConfig:
    """The method's config with ``params`` applied; unknown names raise ValueError/TypeError."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {sorted(METHODS)}")
    return METHODS[name].config_class(**params)


def train(spec: TrainSpec, on_progress: Callable[[Progress], None]) -> dict[str, Any]:
    from accelerate import Accelerator
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    config = method_config(spec.method, spec.params)
    torch.manual_seed(config.seed)
    torch.set_num_threads(spec.threads)
    tokenizer = AutoTokenizer.from_pretrained(spec.base_model)
    model = load_merged(spec.base_model, spec.parent_adapter)
    method: Method = METHODS[spec.method](config, tokenizer, spec.forget, spec.retain)
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        target_modules=list(method.target_modules(model)),
        lora_dropout=0.0,
    )
    model = get_peft_model(model, lora)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.learning_rate
    )
    # One process here; under `accelerate launch` on GPUs, one per device (DDP, FSDP, DeepSpeed).
    accelerator = Accelerator()
    model, optimizer = accelerator.prepare(model, optimizer)
    method.device = accelerator.device
    method.prepare(model)
    order = random.Random(config.seed)
    forget_order: list[int] = []
    start = time.monotonic()
    losses = []
    for step in range(1, config.steps + 1):
        if len(forget_order) < config.batch_size:
            forget_order += order.sample(range(len(spec.forget)), len(spec.forget))
        forget = forget_order[: config.batch_size]
        del forget_order[: config.batch_size]
        retain = order.sample(range(len(spec.retain)), min(config.batch_size, len(spec.retain)))
        loss = method.loss(model, forget, retain)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        elapsed = time.monotonic() - start
        if accelerator.is_main_process:
            eta = elapsed / step * (config.steps - step)
            on_progress(Progress(step, config.steps, losses[-1], eta))
    accelerator.wait_for_everyone()
    method.finish(accelerator.unwrap_model(model))
    consolidated = None
    if accelerator.is_main_process:
        consolidated = save_combined(
            accelerator.unwrap_model(model), spec.parent_adapter, Path(spec.output), spec.max_rank
        )
    return {
        "steps": config.steps,
        "final_loss": losses[-1],
        "train_seconds": round(time.monotonic() - start, 3),
        "config": asdict(config),
        **({"consolidated": consolidated} if consolidated else {}),
    }


def consolidate(a: torch.Tensor, b: torch.Tensor, rank: int) -> tuple[torch.Tensor, ...]:
    """Factors of rank ``rank`` of the update ``b @ a`` nearest to it (truncated SVD, computed
    through QR of the factors, never the full matrix), and the relative Frobenius error.

    ``b = Q_b R_b``, ``aᵀ = Q_a R_a``: ``b @ a = Q_b (R_b R_aᵀ) Q_aᵀ``, and the SVD of the small
    middle matrix gives the update's."""
    q_b, r_b = torch.linalg.qr(b.double())
    q_a, r_a = torch.linalg.qr(a.double().T)
    u, s, vh = torch.linalg.svd(r_b @ r_a.T, full_matrices=False)
    kept = s[:rank]
    total = s.square().sum()
    error = float((s[rank:].square().sum() / total).sqrt()) if total > 0 else 0.0
    new_b = (q_b @ u[:, : len(kept)]) * kept
    new_a = vh[: len(kept)] @ q_a.T
    # A module narrower than the rank has fewer singular values: zero factors fill the rest.
    pad = rank - len(kept)
    new_b = torch.cat([new_b, new_b.new_zeros(new_b.shape[0], pad)], 1)
    new_a = torch.cat([new_a, new_a.new_zeros(pad, new_a.shape[1])], 0)
    return new_a.to(a.dtype).contiguous(), new_b.to(b.dtype).contiguous(), error


def save_combined(
    model: Any, parent: str | None, output: Path, max_rank: int | None = None
) -> dict[str, Any] | None:
    """Save parent + this model's LoRA update as one adapter (rank r_parent + r_new, scale 1);
    past ``max_rank``, consolidated to it (returns its rank before and its largest error).

    ``ΔW = B_p A_p s_p + B_n A_n s_n = [B_p, B_n] · [A_p s_p; A_n s_n]``; a module that only one
    adapter touches gets zero factors from the other.
    """
    from peft import get_peft_model_state_dict

    config = model.peft_config["default"]
    state = {k: v.detach().cpu() for k, v in get_peft_model_state_dict(model).items()}
    parts = [(state, config.r, config.lora_alpha / config.r)]
    modules = set(config.target_modules)
    if parent:
        parent_config = json.loads((Path(parent) / ADAPTER_CONFIG).read_text())
        scale = parent_config["lora_alpha"] / parent_config["r"]
        parts.insert(0, (load_file(str(Path(parent) / ADAPTER_WEIGHTS)), parent_config["r"], scale))
        modules |= set(parent_config["target_modules"])
    rank = sum(r for _, r, _ in parts)
    prefixes = {k.rsplit(".lora_", 1)[0] for state, _, _ in parts for k in state}
    combined: dict[str, torch.Tensor] = {}
    for prefix in sorted(prefixes):
        a_key, b_key = f"{prefix}.lora_A.weight", f"{prefix}.lora_B.weight"
        shape_a = next(s[a_key].shape for s, _, _ in parts if a_key in s)
        shape_b = next(s[b_key].shape for s, _, _ in parts if b_key in s)
        a_blocks, b_blocks = [], []
        for state, r, scale in parts:
            present = a_key in state
            a_blocks.append(state[a_key] * scale if present else torch.zeros(r, shape_a[1]))
            b_blocks.append(state[b_key] if present else torch.zeros(shape_b[0], r))
        combined[a_key] = torch.cat(a_blocks, 0).contiguous()
        combined[b_key] = torch.cat(b_blocks, 1).contiguous()
    consolidated = None
    if max_rank is not None and rank > max_rank:
        errors = []
        for prefix in sorted(prefixes):
            a_key, b_key = f"{prefix}.lora_A.weight", f"{prefix}.lora_B.weight"
            combined[a_key], combined[b_key], error = consolidate(
                combined[a_key], combined[b_key], max_rank
            )
            errors.append(error)
        worst = max(errors, default=0.0)
        consolidated = {"from_rank": rank, "to_rank": max_rank, "max_relative_error": worst}
        rank = max_rank
    tmp = output.with_name(output.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config.r, config.lora_alpha, config.target_modules = rank, rank, sorted(modules)
    config.save_pretrained(str(tmp))
    save_file(combined, str(tmp / ADAPTER_WEIGHTS))
    tmp.rename(output)
    return consolidated


def load_merged(base_model: str, adapter: str | None = None) -> Any:
    """The base weights in float32, with the adapter (a model version) merged into them."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    if adapter:
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return model


def merge(base_model: str, adapter: str, output: Path) -> Path:
    """Base + adapter as one plain HF model folder: a version served without LoRA (vLLM's CPU
    build cannot score prompts with LoRA on, so evaluations serve the merged weights)."""
    from transformers import AutoTokenizer

    merged = load_merged(base_model, adapter)
    tmp = output.with_name(output.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(base_model).save_pretrained(tmp)
    tmp.rename(output)
    return output
