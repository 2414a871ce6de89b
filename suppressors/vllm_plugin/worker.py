"""Worker extension: forward hooks that steer or corrupt only the flagged requests' tokens.

vLLM mixes ``ObliviateWorkerExtension`` into its worker class; the gateway calls
``obliviate_install`` once the server is up (``POST /collective_rpc``, which needs
``VLLM_SERVER_DEV_MODE=1``), which puts hooks on the embedding and every decoder layer. Several
gateways (each with its data directory) may front one vLLM: each install adds its artifacts
folder, and a forget request's files are looked up in all of them (request ids are uuid4s). Each
forward, a pre-hook on the embedding reads the running requests' ``SamplingParams.extra_args`` in
batch-row order and maps each flagged row to its token range of the flattened batch
(``query_start_loc``); the hooks then touch those rows only, so other requests in the batch run
exactly as without the plugin.
Hooks only fire in eager mode (``--enforce-eager``).

Controls (``vllm_xargs``, JSON strings), validated by the logits processor so bad ones are a 400:

- ``obliviate_steer = {"requests": [ids], "layer": L, "scale": c, "ablate": bool}``: at decoder
  layer L, project the forget directions of those forget requests out of the residual stream
  (``ablate``) and add ``c · median_norm · u``, ``u`` a fixed random unit vector (RMU).
- ``obliviate_corrupt = {"token_ids": [[ids], ...], "scale": σ, "prompt": bool}``: wherever one
  of those token sequences (the forgotten subject's names) occurs in the request, and with
  ``prompt`` on every prompt token but the first, add noise of σ times the embedding's RMS to
  those tokens' embeddings (ECO).
- ``obliviate_logit_diff = {"requests": [ids], "alpha": α}``: at the assistant heads' layer, the
  hook computes those requests' assistant logits from the row's last token state; the logits
  processor, later in the same step and process, subtracts them (``ASSISTANT_LOGITS``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from suppressors.assistant import head_logits
from suppressors.vllm_plugin import ASSISTANT_FILE, CORRUPT, LOGIT_DIFF, STEER, STEERING_FILE
from suppressors.vllm_plugin.controls import decoded

ASSISTANT_LOGITS: dict[int, tuple[float, torch.Tensor]] = {}
"""Batch row -> (alpha, assistant logits of its last token), for this step's logits processor."""


@dataclass
class _RowPlan:
    row: int
    start: int
    end: int
    first: bool
    """The range begins at the request's first token, the attention sink, which is not steered
    (its state has ~100× the others' norm: moving it upsets every later token)."""
    prompt_left: int
    """Prompt tokens in the range (a prefill chunk's; 0 once the request decodes)."""
    steer: dict[str, Any] | None
    corrupt: dict[str, Any] | None
    logit_diff: dict[str, Any] | None


@dataclass
class _State:
    artifacts: list[Path]
    files: dict[tuple[str, str], dict[str, torch.Tensor] | None] = field(default_factory=dict)
    plan: list[_RowPlan] = field(default_factory=list)
    unit: torch.Tensor | None = None
    lm_head: torch.Tensor | None = None
    """The LM head in float32 (the assistant heads use it), made on first use."""


class ObliviateWorkerExtension:
    """Mixed into vLLM's worker class; ``self.model_runner`` is the worker's model runner."""

    model_runner: Any
    _obliviate: _State | None = None

    def obliviate_model_info(self) -> dict[str, int]:
        config = self.model_runner.get_model().config
        return {"num_hidden_layers": config.num_hidden_layers, "hidden_size": config.hidden_size}

    def obliviate_install(self, artifacts_dir: str) -> dict[str, int]:
        """Hook the model (idempotent); forget-request artifacts are also read from
        ``artifacts_dir``."""
        if self._obliviate is not None:
            if Path(artifacts_dir) not in self._obliviate.artifacts:
                self._obliviate.artifacts.append(Path(artifacts_dir))
            return self.obliviate_model_info()
        model = self.model_runner.get_model()
        state = self._obliviate = _State([Path(artifacts_dir)])
        generator = torch.Generator().manual_seed(0)
        unit = torch.rand(model.config.hidden_size, generator=generator)  # RMU: uniform, normed
        state.unit = unit / unit.norm()
        inner = model.model
        # The embedding runs first in every forward; the model itself takes no hooks (vLLM's
        # compile decorator calls its forward directly).
        inner.embed_tokens.register_forward_pre_hook(lambda _m, _a: self._obliviate_plan())
        inner.embed_tokens.register_forward_hook(self._obliviate_embed_hook)
        for index, layer in enumerate(inner.layers):
            layer.register_forward_hook(self._obliviate_layer_hook(index))
        return self.obliviate_model_info()

    def _obliviate_plan(self) -> None:
        """Token ranges of this step's flagged requests, in the flattened batch."""
        state = self._obliviate
        runner = self.model_runner
        batch = runner.input_batch
        starts = runner.query_start_loc.np
        state.plan = []
        ASSISTANT_LOGITS.clear()
        for row, req_id in enumerate(batch.req_ids[: batch.num_reqs]):
            cached = runner.requests.get(req_id)
            params = cached.sampling_params if cached is not None else None
            extra = (params.extra_args if params is not None else None) or {}
            controls = [decoded(extra, key) for key in (STEER, CORRUPT, LOGIT_DIFF)]
            if any(controls):
                computed = int(batch.num_computed_tokens_cpu[row])
                start, end = int(starts[row]), int(starts[row + 1])
                prompt_left = max(0, min(end - start, cached.num_prompt_tokens - computed))
                span = (start, end, computed == 0, prompt_left)
                state.plan.append(_RowPlan(row, *span, *controls))

    def _obliviate_embed_hook(
        self, _module: torch.nn.Module, args: tuple[Any, ...], output: torch.Tensor
    ) -> torch.Tensor | None:
        rows = [r for r in self._obliviate.plan if r.corrupt]
        if not rows:
            return None
        input_ids = args[0]
        output = output.clone()
        for row in rows:
            ids = input_ids[row.start : row.end].tolist()
            prompt = range(row.first, row.prompt_left) if row.corrupt.get("prompt") else range(0)
            positions = corrupted_positions(ids, row.corrupt["token_ids"], prompt)
            if at := [row.start + i for i in positions]:
                output[at] = corrupted(output[at], input_ids[at], row.corrupt["scale"])
        return output

    def _obliviate_layer_hook(self, index: int):
        def hook(_module: torch.nn.Module, _args: Any, output: tuple[torch.Tensor, torch.Tensor]):
            state = self._obliviate
            hidden, residual = output
            for row in state.plan:
                if row.logit_diff:
                    last = row.end - 1  # the token whose logits are sampled
                    self._obliviate_assistant(index, row, hidden[last] + residual[last])
            rows = [r for r in state.plan if r.steer and r.steer["layer"] == index]
            if not rows:
                return None
            hidden = hidden.clone()
            for row in rows:
                at = slice(row.start + row.first, row.end)
                hidden[at] = self._obliviate_steered(index, row.steer, hidden[at], residual[at])
            return hidden, residual

        return hook

    def _obliviate_steered(
        self, index: int, steer: dict[str, Any], hidden: torch.Tensor, residual: torch.Tensor
    ) -> torch.Tensor:
        """``hidden`` such that ``hidden + residual`` (the residual stream) is steered."""
        state = self._obliviate
        files = [self._obliviate_file(r, STEERING_FILE) for r in steer["requests"]]
        vectors = [v for v in files if v is not None]
        if not vectors:
            return hidden
        stream = (hidden + residual).float()
        delta = torch.zeros_like(stream)
        if steer.get("ablate", True):
            directions = torch.stack([v["directions"][index] for v in vectors], dim=1)
            basis, _ = torch.linalg.qr(directions)  # orthonormal: several requests at once
            delta -= (stream @ basis) @ basis.T
        norm = torch.stack([v["median_norm"][index] for v in vectors]).max()
        delta += steer["scale"] * norm * state.unit
        return hidden + delta.to(hidden.dtype)

    def _obliviate_assistant(self, index: int, row: _RowPlan, state: torch.Tensor) -> None:
        """Sum the row's assistant logits from the heads that read layer ``index``."""
        model = self.model_runner.get_model()
        norm = model.model.norm
        if self._obliviate.lm_head is None:
            self._obliviate.lm_head = model.lm_head.weight.float()
        for request_id in row.logit_diff["requests"]:
            head = self._obliviate_file(request_id, ASSISTANT_FILE)
            if head is None or int(head["layer"]) != index:
                continue
            args = (head, norm.weight, norm.variance_epsilon, self._obliviate.lm_head)
            logits = head_logits(state[None], *args)[0]
            alpha, total = ASSISTANT_LOGITS.get(row.row, (row.logit_diff["alpha"], 0))
            ASSISTANT_LOGITS[row.row] = (alpha, total + logits)

    def _obliviate_file(self, request_id: str, name: str) -> dict[str, torch.Tensor] | None:
        """A forget request's artifact file; None when it has none (never fail a forward)."""
        state = self._obliviate
        key = (request_id, name)
        if state.files.get(key) is None:
            paths = (folder / request_id / name for folder in state.artifacts)
            found = next((path for path in paths if path.is_file()), None)
            state.files[key] = load_file(found) if found else None
        return state.files[key]


def _occurrences(ids: list[int], sequence: list[int]) -> list[int]:
    n = len(sequence)
    return [i for i in range(len(ids) - n + 1) if ids[i : i + n] == sequence]


def corrupted_positions(
    ids: list[int], sequences: list[list[int]], prompt: range = range(0)
) -> list[int]:
    """Positions of ``ids`` that embedding corruption touches: every occurrence of one of the
    ``sequences`` (the forgotten names), and the ``prompt`` positions."""
    hit = set(prompt)
    for sequence in sequences:
        for offset in _occurrences(ids, sequence):
            hit.update(range(offset, offset + len(sequence)))
    return sorted(hit)


def corrupted(embeddings: torch.Tensor, token_ids: torch.Tensor, scale: float) -> torch.Tensor:
    """Embeddings plus Gaussian noise (seeded by token id, so greedy answers stay reproducible)."""
    size = embeddings.shape[-1]
    noise = torch.stack(
        [torch.randn(size, generator=torch.Generator().manual_seed(int(t))) for t in token_ids]
    )
    rms = embeddings.float().pow(2).mean(dim=-1, keepdim=True).sqrt()
    return (embeddings.float() + scale * rms * noise).to(embeddings.dtype)
