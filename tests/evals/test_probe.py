"""The representation probe's readings on cases whose answer is known, and a run on a tiny model."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from evals.data import QA
from evals.probe import DEPTHS, RepresentationProbe, ablated, probe_accuracy, shift
from tests.conftest import tiny_llama


def test_probe_accuracy_separates_what_differs_and_nothing_else() -> None:
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(40, 8, generator=generator)
    apart = torch.zeros(8)
    apart[0] = 10
    assert probe_accuracy(noise[:20] + apart, noise[20:]) == (1.0, (1.0, 1.0))
    accuracy, (low, high) = probe_accuracy(noise[:20], noise[20:])  # the same distribution
    assert accuracy < 0.8 and low < 0.5 < high


def test_the_interval_draws_questions_not_their_copies() -> None:
    """A question's several answers are one draw: four copies of ten questions are as uncertain
    as ten questions, not forty."""
    generator = torch.Generator().manual_seed(0)
    positive = torch.randn(10, 8, generator=generator)
    negative = torch.randn(10, 8, generator=generator)
    positive[:, 0] += 1.5
    copies = [positive.repeat(4, 1), negative.repeat(4, 1)]
    questions = list(range(10)) * 4 * 2
    _, (grouped_low, grouped_high) = probe_accuracy(*copies, questions)
    _, (low, high) = probe_accuracy(*copies)
    assert grouped_high - grouped_low > 1.5 * (high - low)


def test_shift_is_zero_for_the_same_states_and_one_for_orthogonal_ones() -> None:
    states = torch.eye(4)
    assert shift(states, states) == pytest.approx(0.0, abs=1e-6)
    assert shift(states, states.roll(1, dims=1)) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("tiny"))


def qa(n: int, about: str) -> list[QA]:
    return [QA(f"Where did {about} {i} live?", f"{about} {i} lived in town {i}.",
               [f"{about} {i} lived in the city of {i + 7}.", f"{about} {i} never moved."])
            for i in range(n)]  # fmt: skip


def test_ablation_removes_the_direction_from_that_layer(tiny: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    ids = tokenizer("Ann Lee was born in Oslo.", return_tensors="pt").input_ids
    direction = torch.randn(model.config.hidden_size)
    with torch.no_grad(), ablated(model, 3, direction):
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[4]
    assert (hidden @ (direction / direction.norm())).abs().max() < 1e-4


def test_a_run_reads_every_depth(tiny: Path) -> None:
    target = AutoModelForCausalLM.from_pretrained(tiny).eval()
    probe = RepresentationProbe(AutoTokenizer.from_pretrained(tiny), qa(6, "Ann"), qa(6, "Bo"))
    same = probe.run(target, target)
    assert [row.depth for row in same] == list(DEPTHS)
    assert all(row.forget_shift < 1e-5 and row.ablation_recovery is None for row in same)
    changed = copy.deepcopy(target)
    with torch.no_grad():  # states move from layer 1 on, and the answers' probabilities change
        changed.model.layers[1].mlp.down_proj.weight.mul_(3.0)
        changed.model.norm.weight.mul_(5.0)
    rows = probe.run(changed, target)
    assert all(row.forget_shift > 0 and row.ablation_recovery is not None for row in rows)
    assert all(0 <= row.probe_interval[0] <= row.probe_accuracy <= row.probe_interval[1] <= 1
               for row in rows)  # fmt: skip
