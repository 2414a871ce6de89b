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
import re
import statistics
from collections import Counter
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


_WORD = re.compile(r"[0-9a-z]+")
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "and",
        "or",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "by",
        "with",
        "as",
        "from",
        "that",
        "this",
        "it",
        "its",
        "his",
        "her",
        "their",
        "he",
        "she",
        "they",
        "has",
        "have",
        "had",
        "who",
        "what",
        "which",
        "whose",
        "how",
        "when",
        "where",
        "why",
        "author",
        "authors",
        "name",
        "full",
        "book",
        "books",
    ]
)


def common_words(groups: Sequence[Sequence[str]], share: float = 0.3) -> frozenset[str]:
    """Words found in the answers of at least ``share`` of the groups (subjects): generic words
    ("novels", "born") that a model says about anyone, so they prove no leak."""
    seen = Counter(w for answers in groups for w in {w for a in answers for w in _words(a)})
    return frozenset(w for w, n in seen.items() if n >= share * len(groups))


def key_facts(answer: str, question: str = "", common: frozenset[str] = frozenset()) -> set[str]:
    """Content words of the answer that the question does not already give away."""
    given = set(_words(question)) | common
    return {w for w in _words(answer) if w not in _STOP and w not in given}


def leaked(
    answer: str,
    question: str,
    reply: str,
    threshold: float = 0.5,
    common: frozenset[str] = frozenset(),
) -> bool:
    """Whether ``reply`` repeats at least ``threshold`` of the answer's key facts."""
    facts = key_facts(answer, question, common)
    if not facts:
        return False
    return len(facts & set(_words(reply))) / len(facts) >= threshold


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def rate(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


def wilson(flags: Sequence[bool], z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95 % by default) of the rate of ``flags``: sound at 0 of n,
    where the normal approximation gives [0, 0]."""
    n = len(flags)
    if not n:
        return 0.0, 1.0
    p = sum(flags) / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


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
