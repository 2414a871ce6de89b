"""The plugin's hooks and logits processor keep to the hidden states' device and dtype.

There is no GPU here, so the model lives on torch's ``meta`` device in bfloat16: an op mixing it
with a CPU tensor fails (mostly: ``meta @ cpu`` passes, so a torch-function mode also refuses any
op whose tensors sit on different devices), and every tensor the hooks keep or make is checked.
The runner and model are fakes of what vLLM builds on a GPU, in the layout the hooks read; the
real path runs in vLLM's CPU build in ``test_in_model_layers`` and ``test_architectures``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from suppressors.vllm_plugin import (
    ANSWERS_FILE,
    ASSISTANT_FILE,
    CORRUPT,
    LOGIT_DIFF,
    NGRAM_PENALTY,
    STEER,
    STEERING_FILE,
)
from suppressors.vllm_plugin.controls import encode
from suppressors.vllm_plugin.logits import ObliviateLogitsProcessor
from suppressors.vllm_plugin.worker import ASSISTANT_LOGITS, ObliviateWorkerExtension, unfit

DEVICE = torch.device("meta")
DTYPE = torch.bfloat16
HIDDEN, VOCAB, LAYERS, RANK = 16, 64, 4, 4
REQUEST = "fr_devices"


class OneDevice(TorchFunctionMode):
    """Refuses any torch op whose tensor arguments sit on more than one device."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        leaves, _ = tree_flatten((args, kwargs or {}))
        devices = {t.device for t in leaves if isinstance(t, torch.Tensor)}
        assert len(devices) <= 1, f"{func} mixes {devices}"
        return func(*args, **(kwargs or {}))


class FakeDecoderLayer(nn.Module):
    """Stands in for a vLLM decoder layer on a GPU: returns ``(hidden, residual)``."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(HIDDEN, HIDDEN, bias=False)

    def forward(
        self, positions: torch.Tensor, hidden_states: torch.Tensor, residual: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        residual = hidden_states if residual is None else hidden_states + residual
        return self.proj(residual), residual


class FakeNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(HIDDEN))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


class FakeEmbedding(nn.Embedding):
    """Takes the token ids on the host: the hooks read them (on a GPU, ``.tolist()`` copies
    them; a meta tensor has no values to copy)."""

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(input_ids.to(self.weight.device))


class FakeLogitsProcessor(nn.Module):
    def forward(self, lm_head: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ lm_head.weight.T


class FakeGpuModel(nn.Module):
    """Stands in for a vLLM Llama-style model on a GPU (there is none here): the module layout
    the hooks read, with tied embeddings (no ``lm_head`` of its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(num_hidden_layers=LAYERS, hidden_size=HIDDEN)
        self.model = nn.Module()
        self.model.embed_tokens = FakeEmbedding(VOCAB, HIDDEN)
        self.model.layers = nn.ModuleList(FakeDecoderLayer() for _ in range(LAYERS))
        self.model.norm = FakeNorm()
        self.logits_processor = FakeLogitsProcessor()

    def forward(self, input_ids: torch.Tensor, sample_rows: list[int]) -> torch.Tensor:
        hidden = self.model.embed_tokens(input_ids)
        residual = None
        for layer in self.model.layers:
            hidden, residual = layer(None, hidden, residual)
        final = self.model.norm(hidden + residual)
        return self.logits_processor(self.model.embed_tokens, final[sample_rows])


class FakeV1Runner:
    """Stands in for vLLM's V1 GPU model runner: the request state the hooks read, for a batch of
    two requests (rows 0 and 1) in their prefill step."""

    def __init__(self, model: FakeGpuModel, lengths: list[int], extra: list[dict]) -> None:
        self.model = model
        starts = np.cumsum([0, *lengths])
        self.query_start_loc = SimpleNamespace(np=starts)
        self.input_batch = SimpleNamespace(
            req_ids=[f"r{i}" for i in range(len(lengths))],
            num_reqs=len(lengths),
            num_computed_tokens_cpu=np.zeros(len(lengths), dtype=np.int64),
            token_ids_cpu=np.zeros((len(lengths), 64), dtype=np.int64),
        )
        self.requests = {
            f"r{i}": SimpleNamespace(
                sampling_params=SimpleNamespace(extra_args=encode(x)), num_prompt_tokens=n
            )
            for i, (n, x) in enumerate(zip(lengths, extra, strict=True))
        }
        self.vllm_config = SimpleNamespace(parallel_config=SimpleNamespace(tensor_parallel_size=1))

    def get_model(self) -> FakeGpuModel:
        return self.model


def write_artifacts(folder: Path) -> None:
    """Every artifact file of one forget request, on the CPU in float32 as the builder saves."""
    (folder / REQUEST).mkdir(parents=True)
    save_file(
        {"directions": torch.randn(LAYERS, HIDDEN), "median_norm": torch.ones(LAYERS)},
        folder / REQUEST / STEERING_FILE,
    )
    head = {"up": torch.randn(HIDDEN, RANK), "down": torch.randn(RANK, HIDDEN)}
    save_file({**head, "layer": torch.tensor(2)}, folder / REQUEST / ASSISTANT_FILE)
    answers = {"ids": torch.tensor([5, 6, 7]), "lengths": torch.tensor([3]),
               "vocabulary": torch.tensor([9, 10])}  # fmt: skip
    save_file(answers, folder / REQUEST / ANSWERS_FILE)


def test_hooks_and_logits_processor_stay_on_the_model_device(tmp_path: Path) -> None:
    write_artifacts(tmp_path)
    with torch.device(DEVICE):
        model = FakeGpuModel().to(DTYPE)
    flagged = {
        STEER: {"requests": [REQUEST], "layer": 1, "scale": 1.0, "ablate": True},
        CORRUPT: {"token_ids": [[5, 6]], "scale": 1.0, "prompt": True},
        LOGIT_DIFF: {"requests": [REQUEST], "alpha": 1.0},
        NGRAM_PENALTY: {"requests": [REQUEST], "n": 2, "beta": 1.0, "vocabulary_beta": 0.5},
    }
    runner = FakeV1Runner(model, [4, 3], [flagged, {}])
    extension = ObliviateWorkerExtension()
    extension.model_runner = runner
    assert "error" not in extension.obliviate_install(str(tmp_path))
    input_ids = torch.tensor([1, 5, 6, 7, 2, 3, 4])

    processor = ObliviateLogitsProcessor(
        SimpleNamespace(model_config=SimpleNamespace(get_vocab_size=lambda: VOCAB)), DEVICE, False
    )
    processor.banned = {0: [3]}
    with OneDevice():
        logits = model(input_ids, sample_rows=[3, 6])
        logits = processor.apply(logits)
    assert (logits.device, logits.dtype, tuple(logits.shape)) == (DEVICE, DTYPE, (2, VOCAB))

    state = extension._obliviate
    assert state.plan and state.plan[0].steer  # the flagged row was planned and acted on
    vectors = [t for f in state.files.values() for t in f.values() if t.is_floating_point()]
    assert all(t.device == DEVICE for t in [state.unit, state.lm_head, *vectors])
    assert len(vectors) == 4  # steering's two, the head's two: every file was read
    assert ASSISTANT_LOGITS == {}  # the processor took them this step


def test_unknown_layout_and_v2_runner_are_named() -> None:
    with torch.device(DEVICE):
        model = FakeGpuModel()
    runner = FakeV1Runner(model, [1], [{}])
    assert unfit(runner, model) is None
    v2 = SimpleNamespace(req_states=None, input_buffers=None)
    assert "VLLM_USE_V2_MODEL_RUNNER=0" in unfit(v2, model)
    del model.model.norm
    assert "FakeGpuModel has no model.{embed_tokens, layers, norm}" in unfit(runner, model)


@pytest.mark.parametrize("depth", [0.5, 3])
def test_steering_depth_follows_the_model(depth: float) -> None:
    from suppressors.base import ModelInfo, UnfitModel
    from suppressors.steering import Steering, SteeringConfig

    layer = Steering(SimpleNamespace(matcher=None), SteeringConfig(layer=depth))
    layer.fit_model(ModelInfo(12, 64, "Tiny"))
    assert layer.layer == (6 if depth == 0.5 else 3)
    with pytest.raises(UnfitModel, match=r"steering\.layer = 3, but the served model has 2 "):
        Steering(SimpleNamespace(matcher=None), SteeringConfig(layer=3)).fit_model(
            ModelInfo(2, 64, "Tiny")
        )
