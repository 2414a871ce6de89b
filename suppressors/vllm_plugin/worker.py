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
- ``obliviate_ngram_penalty = {"requests": [ids], "n": n, "beta": β, "vocabulary_beta": b}``:
  wherever the n - 1 tokens read so far begin an n-gram of those forget requests' texts, β comes
  off the logits of the tokens that would complete it, and b off those of the requests' own
  vocabulary everywhere. A hook on the model's logits computation applies it, so it reaches
  prompt log-probabilities (rows sliced from the step's final states) as well as sampling (one
  row per request).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from suppressors.vllm_plugin import (
    ANSWERS_FILE,
    ASSISTANT_FILE,
    CORRUPT,
    LOGIT_DIFF,
    NGRAM_PENALTY,
    STEER,
    STEERING_FILE,
)
from suppressors.vllm_plugin.controls import decoded
from suppressors.vllm_plugin.head import head_logits
from suppressors.vllm_plugin.ngrams import Completions, completions, penalised
from suppressors.vllm_plugin.recent import Recent

CONTROLS = (STEER, CORRUPT, LOGIT_DIFF, NGRAM_PENALTY)
"""The structured controls, in ``_RowPlan``'s field order."""
ASSISTANT_LOGITS: dict[int, tuple[float, torch.Tensor]] = {}
"""Batch row -> (alpha, assistant logits of its last token), for this step's logits processor."""
KEEP_IDLE_S = 300.0
"""A forget request's files leave memory once no request has named it for this long (revoked)."""
V1_RUNNER_STATE = ("input_batch", "requests", "query_start_loc")
"""What the hooks read of the model runner: vLLM's V1 runner has them, its V2 runner does not."""


def unfit(runner: Any, model: Any) -> str | None:
    """Why the hooks cannot run on this runner and model, or None: they read the V1 runner's
    request state and need the common decoder layout (``model.model.{embed_tokens, layers,
    norm}``, ``logits_processor``, decoder layers that return ``(hidden, residual)``)."""
    runner_class = f"{type(runner).__module__}.{type(runner).__name__}"
    if missing := [name for name in V1_RUNNER_STATE if not hasattr(runner, name)]:
        return (
            f"the hooks read vLLM's V1 model runner and this engine runs {runner_class} "
            f"(no {', '.join(missing)}): start vLLM with VLLM_USE_V2_MODEL_RUNNER=0"
        )
    inner = getattr(model, "model", None)
    parts = ("embed_tokens", "layers", "norm")
    if inner is None or not all(hasattr(inner, part) for part in parts):
        return f"{type(model).__name__} has no model.{{{', '.join(parts)}}} (the hooks' layout)"
    if not hasattr(model, "logits_processor"):
        return f"{type(model).__name__} has no logits_processor (the n-gram penalty's hook)"
    layer = inner.layers[0]
    if "residual" not in inspect.signature(layer.forward).parameters:
        return f"{type(layer).__name__} does not pass a residual stream (hidden, residual)"
    return None


def lm_head(model: Any) -> torch.Tensor:
    """The LM head's weight (models with tied embeddings may have no ``lm_head`` of their own)."""
    head = getattr(model, "lm_head", None)
    return (head if hasattr(head, "weight") else model.model.embed_tokens).weight


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
    penalty: dict[str, Any] | None


@dataclass
class _State:
    artifacts: list[Path]
    device: torch.device
    """The model's: every tensor the hooks keep or make lives there."""
    files: Recent[dict[str, torch.Tensor] | None] = field(
        default_factory=lambda: Recent(capacity=4096, idle_s=KEEP_IDLE_S)
    )
    """(forget request, file name) -> its tensors, None where it has no such file."""
    plan: list[_RowPlan] = field(default_factory=list)
    unit: torch.Tensor | None = None
    lm_head: torch.Tensor | None = None
    """The LM head in float32 (the assistant heads use it), made on first use."""
    penalties: dict[int, list[tuple[list[int], float]]] = field(default_factory=dict)
    """This step's penalties (n-gram completions, vocabulary): position in the flattened batch ->
    [(token ids, β)]."""
    final: torch.Tensor | None = None
    """This step's final hidden states (prompt log-probabilities take slices of them)."""
    tables: Recent[tuple[Completions, list[int]]] = field(
        default_factory=lambda: Recent(capacity=256, idle_s=KEEP_IDLE_S)
    )
    """(forget requests, n) -> their n-gram table and their vocabulary."""


class ObliviateWorkerExtension:
    """Mixed into vLLM's worker class; ``self.model_runner`` is the worker's model runner."""

    model_runner: Any
    _obliviate: _State | None = None

    def obliviate_model_info(self) -> dict[str, Any]:
        """The served model, as ``suppressors.base.ModelInfo`` reads it."""
        model = self.model_runner.get_model()
        config = model.config
        parallel = self.model_runner.vllm_config.parallel_config
        return {
            "num_hidden_layers": config.num_hidden_layers,
            "hidden_size": config.hidden_size,
            "architecture": type(model).__name__,
            "tensor_parallel_size": parallel.tensor_parallel_size,
        }

    def obliviate_install(self, artifacts_dir: str) -> dict[str, Any]:
        """Hook the model (idempotent); forget-request artifacts are also read from
        ``artifacts_dir``. Returns ``obliviate_model_info``, or ``{"error": why}`` where the hooks
        cannot run (raising here would fail vLLM's RPC, not explain it)."""
        if self._obliviate is not None:
            if Path(artifacts_dir) not in self._obliviate.artifacts:
                self._obliviate.artifacts.append(Path(artifacts_dir))
            return self.obliviate_model_info()
        model = self.model_runner.get_model()
        if error := unfit(self.model_runner, model):
            return {"error": error}
        state = self._obliviate = _State([Path(artifacts_dir)], lm_head(model).device)
        generator = torch.Generator().manual_seed(0)  # on the CPU: the same vector on any device
        unit = torch.rand(model.config.hidden_size, generator=generator)  # RMU: uniform, normed
        state.unit = (unit / unit.norm()).to(state.device)
        inner = model.model
        # The embedding runs first in every forward; the model itself takes no hooks (vLLM's
        # compile decorator calls its forward directly).
        inner.embed_tokens.register_forward_pre_hook(lambda _m, args: self._obliviate_plan(args[0]))
        inner.embed_tokens.register_forward_hook(self._obliviate_embed_hook)
        for index, layer in enumerate(inner.layers):
            layer.register_forward_hook(self._obliviate_layer_hook(index))
        inner.norm.register_forward_hook(self._obliviate_final_hook)
        model.logits_processor.register_forward_hook(self._obliviate_logits_hook)
        return self.obliviate_model_info()

    def _obliviate_plan(self, input_ids: torch.Tensor) -> None:
        """Token ranges of this step's flagged requests, in the flattened batch."""
        state = self._obliviate
        runner = self.model_runner
        batch = runner.input_batch
        starts = runner.query_start_loc.np
        state.plan = []
        state.penalties = {}
        ASSISTANT_LOGITS.clear()
        state.files.drop_idle()
        state.tables.drop_idle()
        for row, req_id in enumerate(batch.req_ids[: batch.num_reqs]):
            cached = runner.requests.get(req_id)
            params = cached.sampling_params if cached is not None else None
            extra = (params.extra_args if params is not None else None) or {}
            controls = [decoded(extra, key) for key in CONTROLS]
            if any(controls):
                computed = int(batch.num_computed_tokens_cpu[row])
                start, end = int(starts[row]), int(starts[row + 1])
                prompt_left = max(0, min(end - start, cached.num_prompt_tokens - computed))
                span = (start, end, computed == 0, prompt_left)
                state.plan.append(plan := _RowPlan(row, *span, *controls))
                if plan.penalty:
                    self._obliviate_penalise(plan, computed, input_ids[start:end].tolist())

    def _obliviate_penalise(self, plan: _RowPlan, computed: int, step: list[int]) -> None:
        """The n-gram penalties of a row's tokens in this step (read after the n - 2 before)."""
        n, beta = plan.penalty["n"], float(plan.penalty["beta"])
        vocabulary_beta = float(plan.penalty.get("vocabulary_beta", 0))
        table, vocabulary = self._obliviate_table(tuple(plan.penalty["requests"]), n)
        tokens = self.model_runner.input_batch.token_ids_cpu[plan.row]
        before = tokens[max(0, computed - n + 2) : computed].tolist()
        penalties = self._obliviate.penalties
        if vocabulary and vocabulary_beta:
            for offset in range(len(step)):
                penalties[plan.start + offset] = [(vocabulary, vocabulary_beta)]
        for offset, after in penalised(table, n, before + step, len(before)).items():
            penalties.setdefault(plan.start + offset, []).append((sorted(after), beta))

    def _obliviate_table(self, requests: tuple[str, ...], n: int) -> tuple[Completions, list[int]]:
        """The n-gram table of those forget requests' texts and their vocabulary (kept once every
        file is found; files built before the vocabulary was added have none)."""

        def load() -> tuple[tuple[Completions, list[int]], bool]:
            read = (self._obliviate_file(r, ANSWERS_FILE) for r in requests)
            files = [f for f in read if f is not None]
            texts = [ids.tolist() for f in files for ids in f["ids"].split(f["lengths"].tolist())]
            vocabulary = {i for f in files if "vocabulary" in f for i in f["vocabulary"].tolist()}
            return (completions(texts, n), sorted(vocabulary)), len(files) == len(requests)

        return self._obliviate.tables.get((requests, n), load)

    def _obliviate_final_hook(self, _module: torch.nn.Module, _args: Any, output: Any) -> None:
        self._obliviate.final = output[0] if isinstance(output, tuple) else output

    def _obliviate_logits_hook(
        self, _module: torch.nn.Module, args: tuple[Any, ...], logits: torch.Tensor | None
    ) -> torch.Tensor | None:
        penalties = self._obliviate.penalties
        if not penalties or logits is None:
            return None
        positions = enumerate(self._obliviate_rows(args[1]))
        hits = [(r, hit) for r, p in positions for hit in penalties.get(p, ())]
        if not hits:
            return None
        on = {"device": logits.device}
        rows = torch.tensor([r for r, (ids, _) in hits for _ in ids], **on)
        cols = torch.tensor([i for _, (ids, _) in hits for i in ids], **on)
        betas = torch.tensor([b for _, (ids, b) in hits for _ in ids], dtype=logits.dtype, **on)
        # accumulate: a token can be both a completion and vocabulary
        logits.index_put_((rows, cols), -betas, accumulate=True)
        return logits

    def _obliviate_rows(self, hidden: torch.Tensor) -> list[int]:
        """Each logits row's position in the flattened batch: prompt log-probabilities slice the
        step's final states; sampling gathers each request's last token, in batch-row order."""
        final = self._obliviate.final
        storage = hidden.untyped_storage().data_ptr()
        if final is not None and storage == final.untyped_storage().data_ptr():
            first = (hidden.storage_offset() - final.storage_offset()) // final.stride(0)
            return list(range(first, first + hidden.shape[0]))
        runner = self.model_runner
        starts = runner.query_start_loc.np
        if hidden.shape[0] != runner.input_batch.num_reqs:
            return []  # e.g. speculative decoding's extra rows: not supported
        return [int(starts[row + 1]) - 1 for row in range(hidden.shape[0])]

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
                at_ids = [ids[i] for i in positions]
                output[at] = corrupted(output[at], at_ids, row.corrupt["scale"])
        return output

    def _obliviate_layer_hook(self, index: int):
        def hook(_module: torch.nn.Module, _args: Any, output: tuple[torch.Tensor, torch.Tensor]):
            state = self._obliviate
            hidden, residual = output
            if rows := [r for r in state.plan if r.logit_diff]:
                self._obliviate_assistants(index, rows, hidden, residual)
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

    def _obliviate_assistants(
        self, index: int, rows: list[_RowPlan], hidden: torch.Tensor, residual: torch.Tensor
    ) -> None:
        """Sum the rows' assistant logits from the heads that read layer ``index``: each head
        takes all its rows' last tokens at once (read once per row, the float32 LM head made a
        token at concurrency 16 cost 5.2x bare vLLM instead of 1.5x; ``evals.layer_cost``)."""
        heads: dict[str, list[_RowPlan]] = {}
        for row in rows:
            for request_id in row.logit_diff["requests"]:
                heads.setdefault(request_id, []).append(row)
        model = self.model_runner.get_model()
        norm = model.model.norm
        for request_id, its_rows in heads.items():
            head = self._obliviate_file(request_id, ASSISTANT_FILE)
            if head is None or int(head["layer"]) != index:
                continue
            if self._obliviate.lm_head is None:
                self._obliviate.lm_head = lm_head(model).float()
            last = [row.end - 1 for row in its_rows]  # the tokens whose logits are sampled
            args = (head, functools.partial(_served_norm, norm), self._obliviate.lm_head,
                    getattr(model.logits_processor, "soft_cap", None))  # fmt: skip
            logits = head_logits(hidden[last] + residual[last], *args)
            for row, row_logits in zip(its_rows, logits, strict=True):
                alpha, total = ASSISTANT_LOGITS.get(row.row, (row.logit_diff["alpha"], 0))
                ASSISTANT_LOGITS[row.row] = (alpha, total + row_logits)

    def _obliviate_file(self, request_id: str, name: str) -> dict[str, torch.Tensor] | None:
        """A forget request's artifact file; None when it has none (never fail a forward)."""
        state = self._obliviate

        def load() -> tuple[dict[str, torch.Tensor] | None, bool]:
            paths = (folder / request_id / name for folder in state.artifacts)
            found = next((path for path in paths if path.is_file()), None)
            # Read on the CPU; the vectors move to the model's device, while token ids and layer
            # numbers stay on the host, where the hooks read them as Python ints.
            tensors = load_file(found) if found else {}
            on_device = {
                k: v.to(state.device) if v.is_floating_point() else v for k, v in tensors.items()
            }
            return on_device or None, found is not None

        return state.files.get((request_id, name), load)


def _served_norm(norm: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's final norm on ``x``, in the dtype its kernels take."""
    return norm(x.to(norm.weight.dtype))


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


def corrupted(embeddings: torch.Tensor, token_ids: list[int], scale: float) -> torch.Tensor:
    """Embeddings plus Gaussian noise (seeded by token id, so greedy answers stay reproducible)."""
    size = embeddings.shape[-1]
    # Drawn on the CPU (the same noise on any device), then moved once.
    noise = torch.stack(
        [torch.randn(size, generator=torch.Generator().manual_seed(t)) for t in token_ids]
    ).to(embeddings.device)
    rms = embeddings.float().pow(2).mean(dim=-1, keepdim=True).sqrt()
    return (embeddings.float() + scale * rms * noise).to(embeddings.dtype)
