"""A V2-runner ``LogitsProcessor`` applying per-request token bans from ``extra_args``.

vLLM's V2 model runner (the CUDA default) loads only subclasses of its V2 interface, keyed by
request slot rather than batch row. This module stays import-light, as vLLM requires: the
frontend imports it to validate params, so torch and numpy are imported inside functions only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from vllm.v1.worker.gpu.sample.logits_processor.interface import (
    LogitsContext,
    LogitsProcessor,
    LogitsProcRequestState,
)

from suppressors.vllm_plugin.controls import banned_token_ids, check_controls

if TYPE_CHECKING:
    import torch
    from vllm.config import VllmConfig
    from vllm.sampling_params import SamplingParams


def ban_table(
    banned: Mapping[int, Sequence[int]], vocab_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``{key: token ids}`` as index tensors ``keys [K]`` and ``ids [K, width]`` on ``device``.

    Ids outside the vocabulary are dropped, and so are keys left with none (None when no key
    is left). Short rows repeat their first id: writing the same ban twice is harmless, and a
    rectangle indexes in one tensor op. Shared by the V1 (key = batch row) and V2 (key = slot)
    processors.

        >>> import torch
        >>> keys, ids = ban_table({2: [5, 7], 0: [9]}, 10, torch.device("cpu"))
        >>> keys.tolist(), ids.tolist()
        ([2, 0], [[5, 7], [9, 9]])
    """
    import torch

    kept = {key: [i for i in ids if i < vocab_size] for key, ids in banned.items()}
    kept = {key: ids for key, ids in kept.items() if ids}
    if not kept:
        return None
    width = max(map(len, kept.values()))
    table = [ids + ids[:1] * (width - len(ids)) for ids in kept.values()]
    return (
        torch.tensor(list(kept), dtype=torch.long, device=device),
        torch.tensor(table, dtype=torch.long, device=device),
    )


class ObliviateLogitsProcessorV2(LogitsProcessor):
    """Bans token ids for the requests that ask for it, on vLLM's V2 model runner.

    It validates every obliviate control (a bad one fails only its request, with an HTTP 400)
    and applies ``obliviate_ban_token_ids``. It does not apply the logit difference
    (``ASSISTANT_LOGITS``): the worker extension's hooks that compute it are V1-runner only, so
    the gateway pins the V1 runner whenever hooks are needed. Load it with::

        python -m vllm.entrypoints.openai.api_server --model DIR \\
            --logits-processors suppressors.vllm_plugin.logits_v2:ObliviateLogitsProcessorV2

    and ban per request with ``"vllm_xargs": {"obliviate_ban_token_ids": [42, 7]}``.
    """

    def __init__(self, vllm_config: VllmConfig, req_states: LogitsProcRequestState) -> None:
        import numpy as np

        self.vocab_size = req_states.vocab_size
        self.max_num_reqs = req_states.max_num_reqs
        # Slot -> banned ids. The V2 runner has no removal callback: a freed slot keeps its
        # entry until add_request overwrites it, and is never in the batch meanwhile.
        self.banned: dict[int, list[int]] = {}
        # Host mirror of "slot has bans", so apply skips batches without bans, sync-free.
        self.has_bans = np.zeros(self.max_num_reqs, dtype=bool)
        # Bumped whenever a slot's bans change; keys the cached device tables.
        self.generation = 0
        self.cache_key: tuple[object, ...] | None = None
        self.cache: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        # A ValueError here becomes vLLM's validation error: HTTP 400 for that request only.
        check_controls(sampling_params.extra_args or {})

    def add_request(self, req_idx: int, sampling_params: SamplingParams) -> bool:
        ids = banned_token_ids(sampling_params.extra_args or {})
        if ids or self.has_bans[req_idx]:
            self.generation += 1
        if ids:
            self.banned[req_idx] = list(ids)
        else:
            self.banned.pop(req_idx, None)
        self.has_bans[req_idx] = bool(ids)
        return bool(ids)

    def _tables(
        self, slots: tuple[int, ...], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``lookup [max_num_reqs]`` (slot -> table row, -1 for none) and ``ids [S, width]``.

        Cached while the batch's banned slots and their bans stay the same (most decode steps),
        so a step usually copies nothing to the device.
        """
        import torch

        key = (self.generation, slots, device)
        if key != self.cache_key:
            table = ban_table({s: self.banned[s] for s in slots}, self.vocab_size, device)
            if table is None:
                self.cache = None
            else:
                keys, ids = table
                lookup = torch.full((self.max_num_reqs,), -1, dtype=torch.long, device=device)
                lookup[keys] = torch.arange(keys.shape[0], device=device)
                self.cache = (lookup, ids)
            self.cache_key = key
        return self.cache

    def apply(self, logits: torch.Tensor, ctx: LogitsContext) -> torch.Tensor:
        import torch

        # Host-side: which of this batch's slots have bans (no device sync).
        slots = ctx.idx_mapping_np[self.has_bans[ctx.idx_mapping_np]]
        if slots.size == 0:
            return logits
        tables = self._tables(tuple(sorted(set(slots.tolist()))), logits.device)
        if tables is None:
            return logits  # every banned id lies outside the vocabulary
        lookup, ids = tables
        # Per logits row (several per request under speculative decoding): its table row.
        table_rows = lookup[ctx.expanded_idx_mapping]
        cols = ids[table_rows.clamp(min=0)]
        # min(logit, -inf) bans; min(logit, +inf) leaves rows without bans untouched, so one
        # scatter covers the batch without selecting rows (which would sync on the device).
        src = torch.full(cols.shape, float("inf"), dtype=logits.dtype, device=logits.device)
        src.masked_fill_((table_rows >= 0)[:, None], float("-inf"))
        logits.scatter_reduce_(1, cols, src, reduce="amin")
        return logits
