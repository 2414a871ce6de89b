"""vLLM's own V2 loader takes ObliviateLogitsProcessorV2 (not the V1 class), which bans per slot."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from vllm import SamplingParams
from vllm.exceptions import VLLMValidationError
from vllm.v1.worker.gpu.sample.logits_processor import (
    LogitsContext,
    LogitsProcRequestState,
    build_custom_logits_processors_params_validator,
)
from vllm.v1.worker.gpu.sample.logits_processor.loader import _load_v2_logitsprocs_by_fqcns

from suppressors.vllm_plugin import BAN_TOKEN_IDS, LOGITS_PROCESSOR, LOGITS_PROCESSOR_V2
from suppressors.vllm_plugin.logits_v2 import ObliviateLogitsProcessorV2

VOCAB = 8
SLOTS = 6


def processor(device: str = "cpu") -> ObliviateLogitsProcessorV2:
    # The processor reads device, max_num_reqs and vocab_size only; the buffers are stand-ins.
    state = LogitsProcRequestState(
        device=torch.device(device),
        max_num_reqs=SLOTS,
        vocab_size=VOCAB,
        all_token_ids=torch.zeros(SLOTS, 4, dtype=torch.int32),  # type: ignore[arg-type]
        prompt_len=torch.zeros(SLOTS, dtype=torch.int32),  # type: ignore[arg-type]
        prefill_len=torch.zeros(SLOTS, dtype=torch.int32),  # type: ignore[arg-type]
        total_len=torch.zeros(SLOTS, dtype=torch.int32),  # type: ignore[arg-type]
    )
    return ObliviateLogitsProcessorV2(None, state)  # type: ignore[arg-type]


def context(slots: list[int], device: str = "cpu") -> LogitsContext:
    """One logits row per request (no speculative decoding), rows in the order of ``slots``."""
    mapping = torch.tensor(slots, dtype=torch.int32, device=device)
    zeros = torch.zeros(len(slots), dtype=torch.int64, device=device)
    return LogitsContext(
        expanded_idx_mapping=mapping,
        idx_mapping=mapping,
        idx_mapping_np=np.array(slots, dtype=np.intp),
        expanded_local_pos=zeros,
        input_ids=zeros,
        pos=zeros,
        seq_lens_upper_bound_np=np.ones(len(slots), dtype=np.int32),
    )


def params(ban: list[int] | None = None) -> SamplingParams:
    return SamplingParams(extra_args={BAN_TOKEN_IDS: ban} if ban is not None else None)


def test_vllm_loader_accepts_v2_and_validates_controls() -> None:
    assert _load_v2_logitsprocs_by_fqcns([LOGITS_PROCESSOR_V2]) == [ObliviateLogitsProcessorV2]
    validate = build_custom_logits_processors_params_validator([LOGITS_PROCESSOR_V2])
    validate(params([1, 2]))
    validate(params())
    with pytest.raises(VLLMValidationError, match=BAN_TOKEN_IDS):
        validate(SamplingParams(extra_args={BAN_TOKEN_IDS: "x"}))


def test_vllm_loader_rejects_v1_class() -> None:
    # Why two classes exist: the V2 runner (the CUDA default) refuses V1-interface processors.
    with pytest.raises(ValueError, match=re.escape("gpu.sample.logits_processor.LogitsProcessor")):
        build_custom_logits_processors_params_validator([LOGITS_PROCESSOR])


def test_bans_only_the_slot_that_asks_and_forgets_on_reuse() -> None:
    proc = processor()
    assert proc.add_request(4, params([1, 5])) is True
    assert proc.add_request(0, params()) is False
    assert proc.add_request(2, params([])) is False
    logits = torch.randn(3, VOCAB)
    before = logits.clone()
    out = proc.apply(logits, context([2, 4, 0]))  # shuffled: slot 4 is row 1
    assert out[1, [1, 5]].isneginf().all()
    keep = [i for i in range(VOCAB) if i not in (1, 5)]
    assert torch.equal(out[1, keep], before[1, keep])
    assert torch.equal(out[[0, 2]], before[[0, 2]])
    # Slot 4 freed (no callback) and reused by a request without bans: no longer banned.
    assert proc.add_request(4, params()) is False
    logits = torch.randn(3, VOCAB)
    before = logits.clone()
    assert torch.equal(proc.apply(logits, context([4, 0, 2])), before)


def test_speculative_rows_and_out_of_vocab_ids() -> None:
    proc = processor()
    proc.add_request(1, params([0, 3, VOCAB + 10]))
    proc.add_request(3, params([VOCAB]))  # only out-of-vocabulary ids: nothing to ban
    ctx = context([3, 1])
    # Slot 1 owns two rows (a draft token), slot 3 one.
    ctx = LogitsContext(
        **{**ctx.__dict__, "expanded_idx_mapping": torch.tensor([3, 1, 1], dtype=torch.int32)}
    )
    logits = torch.randn(3, VOCAB)
    before = logits.clone()
    out = proc.apply(logits, ctx)
    assert out[1:, [0, 3]].isneginf().all()
    assert torch.equal(out[0], before[0])
    assert torch.isfinite(out[1:, [1, 2, 4, 5, 6, 7]]).all()


def test_index_tensors_follow_the_logits_device() -> None:
    proc = processor("meta")
    proc.add_request(2, params([1]))
    logits = torch.empty(2, VOCAB, dtype=torch.float32, device="meta")
    out = proc.apply(logits, context([0, 2], device="meta"))
    assert out.device.type == "meta"
    assert out.dtype == torch.float32
    # Meta tolerates CPU operands, so check the cached index tensors' device directly.
    assert proc.cache is not None
    assert all(t.device.type == "meta" for t in proc.cache)
