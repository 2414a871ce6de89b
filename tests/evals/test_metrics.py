"""Each metric on hand-made cases whose answer is known."""

from __future__ import annotations

import math
import zlib

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


def test_utility_interval_is_a_bootstrap_over_questions() -> None:
    same = [[(0.5, 0.5, 0.5)] * 20, [(0.2, 0.4, 0.8)] * 20]
    utility = metrics.model_utility([0.5, 0.5, 0.5, 0.2, 0.4, 0.8])
    assert metrics.utility_interval(same) == pytest.approx((utility, utility))
    spread = [[(p, 0.5, 0.5) for p in (0.1, 0.9) * 10], [(0.2, 0.4, 0.8)] * 20]
    low, high = metrics.utility_interval(spread)
    point = metrics.model_utility([0.5, 0.5, 0.5, 0.2, 0.4, 0.8])
    assert low < point < high and high - low > 0.02
    more = [[(p, 0.5, 0.5) for p in (0.1, 0.9) * 100], [(0.2, 0.4, 0.8)] * 200]
    narrower = metrics.utility_interval(more)
    assert narrower[1] - narrower[0] < (high - low) / 2  # 10x the questions: ~1/3 the width
    assert metrics.utility_interval([[], [(0.2, 0.4, 0.8)]]) is None  # kept before rows were


def test_recovery_is_the_share_of_the_gap_closed_with_a_paired_interval() -> None:
    before, top = [0.0, 0.2] * 10, [1.0, 1.0] * 10
    assert metrics.gap_closed([0.1, 0.3] * 10, before, top) == pytest.approx(0.1 / 0.9)
    assert metrics.gap_closed([0.5] * 20, [0.5] * 20, [0.5] * 20) is None  # nothing forgotten
    assert metrics.gap_closed([0.9] * 20, [0.84] * 20, [0.85] * 20) is None  # forgot ~nothing
    assert metrics.gap_closed_interval([0.9] * 20, [0.84] * 20, [0.85] * 20) is None
    # Every question closes half its own gap: each draw's share is exactly 0.5.
    halfway = [0.5, 0.6] * 10
    assert metrics.gap_closed_interval(halfway, before, top) == pytest.approx((0.5, 0.5))
    # Half the questions fully recovered, half not at all: the share is 0.5, uncertain.
    mixed = [1.0] * 10 + [0.0] * 10
    low, high = metrics.gap_closed_interval(mixed, [0.0] * 20, [1.0] * 20)
    assert low < 0.5 < high and high - low > 0.2
    assert metrics.gap_closed_interval([0.5] * 20, [0.5] * 20, [0.4] * 20) is None
    assert metrics.gap_closed_interval([], [], []) is None


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


def test_memorisation_metrics_on_known_cases() -> None:
    assert metrics.exact_memorization([1, 2, 3, 4], [1, 2, 9, 4]) == 0.75
    assert metrics.exact_memorization([], []) is None
    assert metrics.extraction_strength([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0  # no prefix needed
    assert metrics.extraction_strength([9, 2, 3, 4], [1, 2, 3, 4]) == 0.75  # one token given
    assert metrics.extraction_strength([9, 9, 9], [1, 2, 3]) == pytest.approx(1 / 3)  # as o-u
    assert metrics.extraction_strength([], []) == 0.0


def test_membership_scores_and_privleak_on_known_cases() -> None:
    seen, unseen = [-0.1, -0.2, -0.3], [-2.0, -3.0, -4.0]
    assert metrics.loss_score(seen) == pytest.approx(-0.2)
    text = "abc " * 50  # compresses to far fewer bytes than its length
    assert metrics.zlib_score(seen, text) == pytest.approx(-0.2 / len(zlib.compress(text.encode())))
    assert metrics.reference_score(seen, unseen) == pytest.approx(-0.2 + 3.0)
    assert metrics.min_k_plus_plus(seen, [0, 0, 0], [1, 1, 1], k=0.34) == pytest.approx(-0.3)
    assert metrics.min_k_plus_plus([-1.0, -1.0], [-2.0, -1.0], [4.0, 1.0], k=0.5) == 0.0
    assert metrics.gradnorm_score(3.5) == -3.5
    scores = [metrics.loss_score([x]) for x in seen], [metrics.loss_score([x]) for x in unseen]
    assert metrics.auc(*scores) == 1.0  # forget text all more familiar: open-unlearning's AUC 1
    assert metrics.privleak(1.0, 0.5) == pytest.approx(-100)  # a target that forgot nothing
    assert metrics.privleak(0.5, 0.5) == 0.0
    assert metrics.privleak(0.25, 0.5) == pytest.approx(50)  # over-unlearned


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("I'm not sure about that author.", "refusal"),
        ("I'm sorry, but I don't have any information about that.", "refusal"),
        ("Her father is a civil engineer.", "answer"),
        ("the the the the the the the the the", "gibberish"),
        ("%%% ### 123 !!! ??? ...", "gibberish"),
        ("civil engineer of civil engineer of civil engineer of civil engineer of", "gibberish"),
        ("", "gibberish"),
        # Gradient ascent's word salad on the TOFU target: distinct, alphabetic, not English.
        (
            " relentlesskers acknowcts richly clustches taxpaytingoziges acknowered disseminating "
            "tirelessly unsc attrs taxpayn delectationally preservings'( PhDs",
            "gibberish",
        ),
        (
            'Elliot Patrick Benson has written numerous books such as "Rhinos with Maracas", "The '
            'Serenading Ostrich", and "Sunburnt Laughter".',
            "answer",
        ),  # invented names, titles
        ("Elvin Mammadov's father worked diligently as a Paramedic.", "answer"),  # rare words
    ],
)
def test_a_degraded_answer_is_not_a_refusal(reply: str, kind: str) -> None:
    assert metrics.answer_kind(reply) == kind
