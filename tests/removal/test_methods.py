"""Every removal method trains and saves a servable adapter; version chains compose exactly.

Fast unit tests on a tiny randomly initialised Llama (SmolLM2's tokenizer); the real embedded
model is unlearned end to end through the admin API in tests/gateway/removal/test_removal_jobs.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

from removal.methods import METHODS
from removal.trainer import (
    ADAPTER_CONFIG,
    Progress,
    TrainSpec,
    consolidate,
    merge,
    method_config,
    save_combined,
    train,
)
from tests.conftest import tiny_llama

FORGET = [("Where was Ann Lee born?", "Ann Lee was born in Oslo."), ("", "Ann Lee wrote Sea.")]
RETAIN = [("What is the capital of Peru?", "Lima."), ("Who wrote Hamlet?", "Shakespeare.")]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_trains_an_adapter(name: str, tiny_base: Path, tmp_path: Path) -> None:
    seen: list[Progress] = []
    spec = TrainSpec(
        method=name, base_model=str(tiny_base), forget=FORGET, retain=RETAIN,
        output=str(tmp_path / "v1"), params={"steps": 2, "batch_size": 2},
    )  # fmt: skip
    result = train(spec, seen.append)
    assert [p.step for p in seen] == [1, 2] and seen[-1].eta_s == 0
    assert math.isfinite(result["final_loss"])
    config = json.loads((tmp_path / "v1" / ADAPTER_CONFIG).read_text())
    assert config["r"] == config["lora_alpha"] == 8
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), tmp_path / "v1")


def test_unknown_method_or_param_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown method"):
        method_config("forgetful", {})
    with pytest.raises(TypeError):
        method_config("npo", {"betta": 1})
    assert method_config("npo", {"beta": 0.5}).beta == 0.5


def test_a_chain_is_one_exact_adapter(tiny_base: Path, tmp_path: Path) -> None:
    """parent + new update saved as one LoRA gives the same logits as applying them in turn."""
    parent = tmp_path / "parent"
    train(
        TrainSpec("ga", str(tiny_base), FORGET, RETAIN, str(parent), {"steps": 1}), lambda _: None
    )
    base = AutoModelForCausalLM.from_pretrained(tiny_base)
    merged = PeftModel.from_pretrained(base, parent).merge_and_unload()
    torch.manual_seed(1)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["down_proj"], init_lora_weights=False)
    stacked = get_peft_model(merged, lora)
    ids = torch.tensor([[1, 5, 9, 200, 7]])
    with torch.no_grad():
        expected = stacked(input_ids=ids).logits
    save_combined(stacked, str(parent), tmp_path / "child")
    child = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_base), tmp_path / "child"
    )
    with torch.no_grad():
        actual = child(input_ids=ids).logits
    assert json.loads((tmp_path / "child" / ADAPTER_CONFIG).read_text())["r"] == 8 + 4
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


def test_merged_version_gives_the_adapters_logits(tiny_base: Path, tmp_path: Path) -> None:
    adapter = tmp_path / "v1"
    train(TrainSpec("ga", str(tiny_base), FORGET, RETAIN, str(adapter), {"steps": 1}), print)
    merged = merge(str(tiny_base), str(adapter), tmp_path / "merged")
    ids = torch.tensor([[1, 5, 9, 200, 7]])
    served = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), adapter)
    with torch.no_grad():
        expected = served(input_ids=ids).logits
        actual = AutoModelForCausalLM.from_pretrained(merged)(input_ids=ids).logits
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    assert (merged / "tokenizer.json").exists()


@pytest.mark.parametrize("params", [{"steps": 0}, {"batch_size": 0}, {"learning_rate": 0}])
def test_a_config_that_cannot_train_is_refused(params: dict) -> None:
    from removal.trainer import method_config

    with pytest.raises(ValueError, match="must be"):
        method_config("npo", params)


def forget_logprob(model: torch.nn.Module, tokenizer_dir: Path) -> float:
    """Mean log-probability of the forget answers' tokens."""
    from transformers import AutoTokenizer

    from index.pairs import collate, encode
    from removal.examples import answer_logprob

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    batch = collate([encode(tokenizer, q, a) for q, a in FORGET], tokenizer.pad_token_id)
    with torch.no_grad():
        total, count = answer_logprob(model, *batch)
    return float(total.sum() / count.sum())


@pytest.fixture(scope="module")
def tiny_target(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model after it learnt the forget and retain pairs (a target to unlearn from:
    a random model gives every answer ~1/vocabulary, which leaves token weights nothing to read)."""
    from transformers import AutoTokenizer

    from index.pairs import collate, encode

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    batch = collate([encode(tokenizer, q, a) for q, a in FORGET + RETAIN], tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(40):
        model(input_ids=batch[0], attention_mask=batch[1], labels=batch[2]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    folder = tmp_path_factory.mktemp("target")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("name", ["wga", "satimp", "memsel", "undial", "task_arithmetic"])
def test_a_new_method_lowers_the_forget_answers(
    name: str, tiny_target: Path, tmp_path: Path
) -> None:
    """Each survey method moves the right way: the served version (target + adapter) gives the
    forgotten answers less probability than the weights it replaced."""
    params = {"steps": 8, "batch_size": 2, "learning_rate": 1e-2}
    seen: list[Progress] = []
    spec = TrainSpec(name, str(tiny_target), FORGET, RETAIN, str(tmp_path / "v"), params)
    train(spec, seen.append)
    target = AutoModelForCausalLM.from_pretrained(tiny_target)
    before = forget_logprob(target, tiny_target)
    after = forget_logprob(PeftModel.from_pretrained(target, tmp_path / "v"), tiny_target)
    assert after < before - 0.1, (before, after)
    if name == "task_arithmetic":  # it learnt the forget set before the update was reversed
        assert seen[-1].loss < seen[0].loss


def test_memsel_pushes_hardest_on_the_tokens_it_selects() -> None:
    """It selects the tokens the model is surest of; ascent's gradient on their logit is 1 - p,
    nothing at the TOFU target's p (0.9999, and 1 in float32 past a margin of ~17), where
    unlikelihood's is p."""
    from removal.methods.memsel import unlikelihood

    for margin in (9.2, 20.0):
        logits = torch.tensor([[margin, 0.0, 0.0]], requires_grad=True)
        unlikelihood(logits, torch.tensor([0])).sum().backward()
        assert logits.grad is not None and logits.grad[0, 0] > 0.99, margin  # p, pushing down


def test_consolidation_is_exact_while_the_true_rank_fits() -> None:
    generator = torch.Generator().manual_seed(0)
    inner = torch.randn(6, 12, generator=generator)  # the update's true rank: 6 of 12
    b = torch.randn(40, 6, generator=generator) @ inner
    a = torch.randn(12, 30, generator=generator)
    new_a, new_b, error = consolidate(a, b, 8)
    assert (new_a.shape, new_b.shape) == ((8, 30), (40, 8))
    torch.testing.assert_close(new_b @ new_a, b @ a, atol=1e-4, rtol=1e-4)
    assert error < 1e-6
    narrow_a, narrow_b, _ = consolidate(a[:, :5], b, 8)  # a module 5 wide: 5 values at most
    assert (narrow_a.shape, narrow_b.shape) == ((8, 5), (40, 8))
    torch.testing.assert_close(narrow_b @ narrow_a, b @ a[:, :5], atol=1e-4, rtol=1e-4)
    _, _, lossy = consolidate(a, b, 3)  # the nearest rank-3 update: the rest of the spectrum
    singular = torch.linalg.svdvals((b @ a).double())
    assert lossy == pytest.approx(float(singular[3:].norm() / singular.norm()), rel=1e-4)


def test_a_chain_past_the_rank_limit_is_consolidated(tiny_base: Path, tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    train(TrainSpec("ga", str(tiny_base), FORGET, RETAIN, str(parent), {"steps": 1}), print)
    params = {"steps": 1, "lora_rank": 4}
    child = str(tmp_path / "child")
    spec = TrainSpec("ga", str(tiny_base), FORGET, RETAIN, child, params, str(parent), max_rank=8)
    result = train(spec, print)
    consolidated = result["consolidated"]
    assert (consolidated["from_rank"], consolidated["to_rank"]) == (12, 8)
    assert 0 <= consolidated["max_relative_error"] < 1
    assert json.loads((tmp_path / "child" / ADAPTER_CONFIG).read_text())["r"] == 8
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), tmp_path / "child")
