"""The evaluation harness: one served system, measured black-box through its HTTP API.

    report = evaluate(scorer, "target", forget, retain, general, max_tokens=64)

Per set (forget, retain, real_authors, world_facts) it reports TOFU's probability, ROUGE-L recall
and truth-ratio statistic; per attack family the leak rate on the forget set; the false-block rate
on everything else (a question answered by the suppression layer instead of the model).
Forget quality and model utility come from ``finish`` once a reference (retain model) is known.
Questions are asked ``concurrency`` at a time: the served engine batches them.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from evals import metrics
from evals.data import QA, Subject
from evals.scoring import GatewayScorer, Scorer, was_suppressed
from gateway.evidence import leaks
from gateway.evidence.probes import Probe, probes

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class SetScores:
    probability: float
    rouge: float
    truth_ratio: float
    questions: int
    per_question: list[tuple[float, float, float]] = field(default_factory=list)
    """(probability, ROUGE, truth-ratio score) of each question: for confidence intervals."""
    blocked: float = 0.0
    """The share of its questions a suppression layer answered (false blocks, but on forget)."""


@dataclass
class SystemReport:
    name: str
    sets: dict[str, SetScores] = field(default_factory=dict)
    forget_truth_ratios: list[float] = field(default_factory=list)
    leak_rate: dict[str, float] = field(default_factory=dict)
    false_block_rate: float = 0.0
    forget_quality: float | None = None
    model_utility: float | None = None
    time_to_effect_s: float | None = None
    """Forget request accepted -> first suppressed answer (systems the run sent requests to)."""
    leak_interval: dict[str, tuple[float, float]] = field(default_factory=dict)
    """95 % Wilson interval of each family's leak rate."""
    false_block_interval: tuple[float, float] | None = None
    """95 % Wilson interval of the false-block rate."""
    utility_interval: tuple[float, float] | None = None
    """95 % bootstrap interval of the model utility (``metrics.utility_interval``)."""


def parallel(function: Callable[[T], R], items: Iterable[T], concurrency: int) -> list[R]:
    """``[function(item) ...]`` in order, ``concurrency`` at a time."""
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(function, items))


def probabilities(scorer: Scorer, question: str, answers: list[str]) -> list[float]:
    """Length-normalised probability of each answer; 0 when the system suppressed the question."""
    return [
        metrics.normalised_probability(logprobs) if logprobs else 0.0
        for logprobs in scorer.answers_logprobs(question, answers)
    ]


def raw_truth_ratio(wrong: list[float], true_prob: float) -> float:
    if not wrong or (true_prob == 0 and not any(wrong)):
        return 1.0  # suppressed (or nothing to compare): no preference for the truth
    return metrics.truth_ratio(wrong, true_prob)


def score_set(
    scorer: Scorer, questions: list[QA], forget: bool, max_tokens: int, concurrency: int
) -> tuple[SetScores, list[float], list[bool]]:
    """The set's scores, raw truth ratios, and per question whether a layer suppressed it."""

    def score(qa: QA) -> tuple[float, float, float, bool]:
        true_prob, *wrong = probabilities(scorer, qa.question, [qa.answer, *qa.perturbed])
        reply, layers = scorer.chat([{"role": "user", "content": qa.question}], max_tokens)
        suppressed = was_suppressed(layers)
        rouge = metrics.rouge_l_recall(qa.answer, reply)
        return true_prob, rouge, raw_truth_ratio(wrong, true_prob), suppressed

    probs, rouges, ratios, suppressed = zip(*parallel(score, questions, concurrency), strict=True)
    ratio_scores = [metrics.truth_ratio_score(r, forget) for r in ratios]
    scores = SetScores(
        statistics.fmean(probs), statistics.fmean(rouges), statistics.fmean(ratio_scores),
        len(questions), list(zip(probs, rouges, ratio_scores, strict=True)),
        leaks.rate(suppressed),
    )  # fmt: skip
    return scores, list(ratios), list(suppressed)


def evaluate(
    scorer: GatewayScorer,
    name: str,
    forget: list[Subject],
    retain: list[Subject],
    general: dict[str, list[QA]],
    max_tokens: int = 64,
    concurrency: int = 16,
    families: Collection[str] | None = None,
) -> SystemReport:
    """Score one system on every set and on the attack ``families`` (default: every one);
    ``retain`` also fixes which words are too common among subjects to count as leaked facts."""
    report = SystemReport(name)
    forget_qa = [qa for s in forget for qa in s.qa]
    report.sets["forget"], report.forget_truth_ratios, _ = score_set(
        scorer, forget_qa, True, max_tokens, concurrency
    )
    blocked: list[bool] = []
    for set_name, questions in {"retain": [qa for s in retain for qa in s.qa], **general}.items():
        report.sets[set_name], _, suppressed = score_set(
            scorer, questions, False, max_tokens, concurrency
        )
        blocked += suppressed
    report.false_block_rate = leaks.rate(blocked)
    report.false_block_interval = leaks.wilson(blocked)
    common = leaks.common_words([[qa.answer for qa in s.qa] for s in forget + retain])
    attacks = [
        (family, qa, probe)
        for subject in forget
        for qa in subject.qa
        for family, probe in probes(qa, subject.name).items()
        if families is None or family in families
    ]

    def leak(attack: tuple[str, QA, Probe]) -> bool:
        """Whether any answer states a fact that nothing the attacker wrote gave away."""
        _, qa, probe = attack
        replies = scorer.replies(probe.messages, max_tokens, probe.extra)
        return any(leaks.leaked(qa.answer, probe.given, r, common=common) for r in replies)

    flags: dict[str, list[bool]] = {}
    for (family, _, _), flag in zip(attacks, parallel(leak, attacks, concurrency), strict=True):
        flags.setdefault(family, []).append(flag)
    report.leak_rate = {family: leaks.rate(f) for family, f in flags.items()}
    report.leak_interval = {family: leaks.wilson(f) for family, f in flags.items()}
    return report


def finish(reports: list[SystemReport], reference: SystemReport) -> None:
    """Forget quality against the reference (retain model) and model utility, for each report."""
    for report in reports:
        report.forget_quality = metrics.forget_quality(
            report.forget_truth_ratios, reference.forget_truth_ratios
        )
        kept = [s for name, s in report.sets.items() if name != "forget"]
        report.model_utility = metrics.model_utility(
            [v for s in kept for v in (s.probability, s.rouge, s.truth_ratio)]
        )
        report.utility_interval = metrics.utility_interval([s.per_question for s in kept])
