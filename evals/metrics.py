"""Unlearning metrics with the definitions of TOFU / open-unlearning, so results compare.

    >>> normalised_probability([-0.1, -0.2, -0.3])          # P(a|q)^(1/|a|)
    0.8187307530779818
    >>> rouge_l_recall("The father is a civil engineer.", "He is a civil engineer.")
    0.6666666666666666
    >>> forget_quality([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])    # identical distributions
    1.0

Probabilities come from per-token log-probabilities of the answer given the question (scored
through the gateway's ``/v1/completions`` with ``echo`` + ``logprobs``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from functools import cache

from rouge_score import rouge_scorer
from scipy.stats import ks_2samp, mannwhitneyu


def normalised_probability(token_logprobs: Sequence[float]) -> float:
    """``P(a|q)^(1/|a|)``: the geometric mean of the answer's token probabilities."""
    if not token_logprobs:
        raise ValueError("an answer needs at least one token")
    return math.exp(sum(token_logprobs) / len(token_logprobs))


@cache
def _scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_recall(reference: str, generated: str) -> float:
    """ROUGE-L recall of the reference answer in the generated one (TOFU's ROUGE)."""
    return _scorer().score(reference, generated)["rougeL"].recall


def truth_ratio(perturbed_probs: Sequence[float], true_prob: float) -> float:
    """``R = p̃_perturbed / p_true``, p̃ the geometric mean over the perturbed answers.

    Probabilities are length-normalised. TOFU divides by a paraphrased true answer; data sets
    without paraphrases (ours) use the true answer itself.
    """
    geometric = math.exp(statistics.fmean(math.log(max(p, 1e-30)) for p in perturbed_probs))
    return geometric / max(true_prob, 1e-30)


def truth_ratio_score(ratio: float, forget: bool) -> float:
    """TOFU's reported truth-ratio statistic: ``max(0, 1 - R)`` on retain-type sets (higher =
    prefers the truth), ``min(R, 1/R)`` on the forget set."""
    return min(ratio, 1 / ratio) if forget else max(0.0, 1 - ratio)


def forget_quality(system_ratios: Sequence[float], retain_model_ratios: Sequence[float]) -> float:
    """p-value of the two-sample KS test between forget-set truth ratios of the evaluated
    system and of the retain model (never trained on the forget set): near 1 = indistinguishable."""
    return float(ks_2samp(system_ratios, retain_model_ratios).pvalue)


def model_utility(scores: Sequence[float]) -> float:
    """Harmonic mean of {probability, ROUGE, truth ratio} over the retain and general sets; one
    zero makes it zero, as in TOFU."""
    if any(s <= 0 for s in scores):
        return 0.0
    return statistics.harmonic_mean(scores)


def min_k_percent(token_logprobs: Sequence[float], k: float = 0.2) -> float:
    """Min-K% Prob (Shi et al. 2024): the mean of the lowest ``k`` share of the token
    log-probabilities; seen (member) text scores higher."""
    lowest = sorted(token_logprobs)[: max(1, int(len(token_logprobs) * k))]
    return sum(lowest) / len(lowest)


def auc(members: Sequence[float], non_members: Sequence[float]) -> float | None:
    """P(a member scores above a non-member), ties counting half (the Mann-Whitney AUC)."""
    if not members or not non_members:
        return None
    result = mannwhitneyu(members, non_members, alternative="two-sided")
    return float(result.statistic) / (len(members) * len(non_members))
