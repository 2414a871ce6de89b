"""The evaluation harness: one served system, measured black-box through its HTTP API.

    report = evaluate(scorer, "target", forget, retain, general, max_tokens=64)

Per set (forget, retain, real_authors, world_facts) it reports TOFU's probability, ROUGE-L recall
and truth-ratio statistic; per attack family the leak rate on the forget set; the false-block rate
on everything else (a question answered by the suppression layer instead of the model).
Forget quality and model utility come from ``finish`` once a reference (retain model) is known.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from evals import metrics
from evals.attacks import probes
from evals.data import QA, Subject
from evals.scoring import GatewayScorer

SUPPRESSING_LAYERS = ("retrieval",)


@dataclass
class SetScores:
    probability: float
    rouge: float
    truth_ratio: float
    questions: int


@dataclass
class SystemReport:
    name: str
    sets: dict[str, SetScores] = field(default_factory=dict)
    forget_truth_ratios: list[float] = field(default_factory=list)
    leak_rate: dict[str, float] = field(default_factory=dict)
    false_block_rate: float = 0.0
    forget_quality: float | None = None
    model_utility: float | None = None


def probability(scorer: GatewayScorer, question: str, answer: str) -> float:
    """Length-normalised probability; 0 when the system suppressed the question."""
    logprobs = scorer.answer_logprobs(question, answer)
    return metrics.normalised_probability(logprobs) if logprobs else 0.0


def raw_truth_ratio(scorer: GatewayScorer, qa: QA, true_prob: float) -> float:
    wrong = [probability(scorer, qa.question, p) for p in qa.perturbed]
    if not wrong or (true_prob == 0 and not any(wrong)):
        return 1.0  # suppressed (or nothing to compare): no preference for the truth
    return metrics.truth_ratio(wrong, true_prob)


def score_set(
    scorer: GatewayScorer, questions: list[QA], forget: bool, max_tokens: int
) -> tuple[SetScores, list[float], list[bool]]:
    """The set's scores, raw truth ratios, and per question whether a layer suppressed it."""
    probs, rouges, ratios, suppressed = [], [], [], []
    for qa in questions:
        true_prob = probability(scorer, qa.question, qa.answer)
        reply, layers = scorer.chat([{"role": "user", "content": qa.question}], max_tokens)
        probs.append(true_prob)
        rouges.append(metrics.rouge_l_recall(qa.answer, reply))
        ratios.append(raw_truth_ratio(scorer, qa, true_prob))
        suppressed.append(any(layer in layers.split(",") for layer in SUPPRESSING_LAYERS))
    stat = statistics.fmean(metrics.truth_ratio_score(r, forget) for r in ratios)
    scores = SetScores(statistics.fmean(probs), statistics.fmean(rouges), stat, len(questions))
    return scores, ratios, suppressed


def evaluate(
    scorer: GatewayScorer,
    name: str,
    forget: list[Subject],
    retain: list[Subject],
    general: dict[str, list[QA]],
    max_tokens: int = 64,
) -> SystemReport:
    report = SystemReport(name)
    forget_qa = [qa for s in forget for qa in s.qa]
    report.sets["forget"], report.forget_truth_ratios, _ = score_set(
        scorer, forget_qa, True, max_tokens
    )
    blocked: list[bool] = []
    for set_name, questions in {"retain": [qa for s in retain for qa in s.qa], **general}.items():
        report.sets[set_name], _, suppressed = score_set(scorer, questions, False, max_tokens)
        blocked += suppressed
    report.false_block_rate = metrics.rate(blocked)
    leaks: dict[str, list[bool]] = {}
    for subject in forget:
        for qa in subject.qa:
            for family, messages in probes(qa, subject.name).items():
                reply, _ = scorer.chat(messages, max_tokens)
                leaks.setdefault(family, []).append(metrics.leaked(qa.answer, qa.question, reply))
    report.leak_rate = {family: metrics.rate(flags) for family, flags in leaks.items()}
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
