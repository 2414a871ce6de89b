"""Each metric on hand-made cases whose answer is known."""

from __future__ import annotations

import math

import pytest

from evals import metrics
from evals.data import QA, Subject, add_perturbations, group, split


def test_probability_and_rouge() -> None:
    assert metrics.normalised_probability([math.log(0.5)] * 7) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        metrics.normalised_probability([])
    assert metrics.rouge_l_recall("The sky is blue.", "The sky is blue.") == 1.0
    assert metrics.rouge_l_recall("The sky is blue.", "I have no information.") == 0.0
    assert metrics.rouge_l_recall("engineers build", "The engineer builds") == 1.0  # stemming


def test_truth_ratio_and_forget_quality() -> None:
    assert metrics.truth_ratio([0.2, 0.2, 0.2], 0.2) == pytest.approx(1.0)
    assert metrics.truth_ratio([0.1, 0.4], 0.4) == pytest.approx(0.5)  # geometric mean 0.2
    assert metrics.truth_ratio_score(0.5, forget=True) == 0.5
    assert metrics.truth_ratio_score(2.0, forget=True) == 0.5
    assert metrics.truth_ratio_score(0.25, forget=False) == 0.75
    same = [0.1, 0.5, 0.9, 0.3]
    assert metrics.forget_quality(same, same) == 1.0
    apart = metrics.forget_quality([0.01 * i for i in range(30)], [1 + 0.01 * i for i in range(30)])
    assert apart < 1e-6


def test_model_utility() -> None:
    assert metrics.model_utility([0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert metrics.model_utility([1.0, 0.5]) == pytest.approx(2 / 3)
    assert metrics.model_utility([0.9, 0.0, 0.9]) == 0.0


def test_data_group_split_perturb() -> None:
    rows = [
        {
            "author_index": i,
            "question": f"Where was Ann Lee{i} born?",
            "answer": f"Ann Lee{i} was born in City{i}.",
        }
        for i in range(4)
    ]
    subjects = group(rows)
    assert [s.name for s in subjects] == [f"Ann Lee{i}" for i in range(4)]
    forget, retain = split(subjects, 1, seed=3)
    assert len(forget) == 1 and len(retain) == 3 and forget[0] not in retain
    assert split(subjects, 1, seed=3)[0][0].key == forget[0].key  # seeded
    add_perturbations(subjects, per_question=2)
    wrong = subjects[0].qa[0].perturbed
    assert len(wrong) == 2 and all(w.startswith("Ann Lee0 was born in City") for w in wrong)
    assert subjects[0].qa[0].answer not in wrong
    assert len(split(subjects, 4)[0]) == 4  # every subject (the sequential experiment's N)
    for bad in (0, 5):
        with pytest.raises(ValueError):
            split(subjects, bad)
    assert isinstance(subjects[0], Subject) and isinstance(subjects[0].qa[0], QA)
