"""Is it removal or suppression? A representation probe of weights we hold (the survey's check).

    probe = RepresentationProbe(tokenizer, forget, retain)   # unseen: forget's perturbed answers
    rows = probe.run(model, target)                          # one row per depth

The survey's claim is that gradient-ascent "removal" teaches a model to *detect* forget data and
degrade its answer, rather than to lose what it knew. Three readings of the hidden states of
forget, retain and unseen QA (mean over the answer's tokens) at several depths tell the cases
apart:

- ``probe_accuracy``: a linear probe's cross-validated balanced accuracy separating forget
  answers from unseen ones, with a 95 % interval (``probe_interval``). The unseen answers are the
  forget questions' perturbed answers: the same question and style, other facts, so the probe has
  only the facts to go on. Folds keep a question's answers together, so it cannot learn the
  question. A model that learnt to detect forget data separates them better than the retain
  model, which never saw either;
- ``forget_shift`` / ``retain_shift``: how far the states moved from the target's (1 - cosine,
  mean over examples). Removal that re-steers forget text moves its states, and not retain's;
- ``ablation_recovery``: project the model's own forget-vs-unseen direction (difference of
  means) out of the residual stream at that depth, and see how much of the forget answers' lost
  log-probability comes back (the share of the gap to the target). Knowledge that a direction
  merely hides comes back; knowledge that is gone does not. Read only where the model lost at
  least ``MIN_LOST`` per token: a share of a smaller loss is noise.

The suppression arm serves the target's weights (its layers act on text, or on the target's
states per request), so its states are the target's: by construction it moves nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from evals.data import QA
from index.pairs import collate, encode
from removal.examples import answer_logprob

DEPTHS = (0.25, 0.5, 0.75, 1.0)
"""Fractions of the decoder's depth that are read."""
MIN_LOST = 0.1
"""The least loss of forget log-probability (mean nats per answer token) worth an ablation
share: the TOFU target's answers average about -0.05."""
BATCH = 16
"""Examples per forward pass (one pass over hundreds keeps every layer's states of every token)."""


@dataclass
class ProbeRow:
    depth: float
    layer: int
    probe_accuracy: float
    probe_interval: tuple[float, float]
    forget_shift: float
    retain_shift: float
    ablation_recovery: float | None
    """None where the model lost less than ``MIN_LOST`` (nothing to recover)."""


def probe_accuracy(
    positive: torch.Tensor,
    negative: torch.Tensor,
    groups: list[int] | None = None,
    folds: int = 5,
    draws: int = 1000,
) -> tuple[float, tuple[float, float]]:
    """Cross-validated balanced accuracy of a logistic regression telling the two sets of vectors
    apart, and its 95 % bootstrap interval. ``groups`` (one per vector, positives first) keeps
    each group in one fold and is what the bootstrap draws (default: every vector its own)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = torch.cat([positive, negative]).float().numpy()
    labels = np.array([1] * len(positive) + [0] * len(negative))
    group = np.array(groups if groups is not None else range(len(labels)))
    if len(group) != len(labels) or len(set(group.tolist())) < 2:
        raise ValueError("one group per vector, and at least two groups")
    # Classes weighted as the score weighs them (a question has one answer, several perturbed).
    model = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=1000, class_weight="balanced")
    )
    split = GroupKFold(min(folds, len(set(group.tolist()))))
    correct = cross_val_predict(model, features, labels, groups=group, cv=split) == labels

    def balanced(rows: np.ndarray) -> float:
        return float(np.mean([correct[rows][labels[rows] == c].mean() for c in (0, 1)]))

    members = {g: np.flatnonzero(group == g) for g in np.unique(group)}
    rng, keys = np.random.default_rng(0), list(members)
    values = []
    for _ in range(draws):
        rows = np.concatenate([members[keys[i]] for i in rng.integers(0, len(keys), len(keys))])
        if len(set(labels[rows].tolist())) == 2:
            values.append(balanced(rows))
    low, high = np.percentile(values, [2.5, 97.5])
    return balanced(np.arange(len(labels))), (float(low), float(high))


def shift(states: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean ``1 - cos`` between each example's state and its state in the reference model."""
    return float((1 - torch.cosine_similarity(states, reference, dim=-1)).mean())


def difference_direction(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """The unit vector from the negative set's mean state to the positive set's."""
    direction = positive.mean(0) - negative.mean(0)
    return direction / direction.norm().clamp(min=1e-8)


@contextmanager
def ablated(model: Any, layer: int, direction: torch.Tensor) -> Iterator[None]:
    """Project ``direction`` out of decoder layer ``layer``'s output for every token."""
    unit = direction / direction.norm()

    def hook(_module: Any, _args: Any, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = hidden - (hidden @ unit).unsqueeze(-1) * unit
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def decoder_layers(model: Any) -> Any:
    return model.get_decoder().layers


def depth_layer(model: Any, depth: float) -> int:
    """The decoder layer at ``depth`` (a fraction of the decoder's layers)."""
    return max(0, round(depth * len(decoder_layers(model))) - 1)


def layer_means(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor
) -> list[torch.Tensor]:
    """Per decoder layer, its output's mean over each row's answer tokens (``labels`` != -100)."""
    answer = (labels != -100).unsqueeze(-1).float()
    means: list[torch.Tensor] = []

    def keep(_module: Any, _args: Any, output: Any) -> None:
        hidden = output[0] if isinstance(output, tuple) else output
        means.append((hidden.float() * answer).sum(1) / answer.sum(1))

    handles = [layer.register_forward_hook(keep) for layer in decoder_layers(model)]
    try:
        with torch.no_grad():  # the decoder alone: the LM head's logits are not read
            model.get_decoder()(input_ids=ids, attention_mask=mask)
    finally:
        for handle in handles:
            handle.remove()
    return means


class RepresentationProbe:
    def __init__(self, tokenizer: Any, forget: list[QA], retain: list[QA]):
        forget = [qa for qa in forget if qa.perturbed]
        unseen = [QA(qa.question, wrong) for qa in forget for wrong in qa.perturbed]
        # The probe's groups: each forget question, with its perturbed answers.
        self.groups = [*range(len(forget)),
                       *(i for i, qa in enumerate(forget) for _ in qa.perturbed)]  # fmt: skip
        pad = tokenizer.pad_token_id
        self.batches = {
            name: [collate([encode(tokenizer, qa.question, qa.answer)
                            for qa in pairs[i : i + BATCH]], pad)
                   for i in range(0, len(pairs), BATCH)]
            for name, pairs in (("forget", forget), ("retain", retain), ("unseen", unseen))
        }  # fmt: skip

    def states(self, model: Any, name: str) -> list[torch.Tensor]:
        """Per decoder layer, its output's mean over each answer's tokens: the residual stream
        the ablation acts on (the model's own hidden states end after its final norm)."""
        per_batch = [layer_means(model, *batch) for batch in self.batches[name]]
        return [torch.cat(layer) for layer in zip(*per_batch, strict=True)]

    def forget_logprob(self, model: Any) -> float:
        """Mean log-probability of the forget answers' tokens."""
        total = count = 0.0
        with torch.no_grad():
            for batch in self.batches["forget"]:
                sums, counts = answer_logprob(model, *batch)
                total, count = total + float(sums.sum()), count + float(counts.sum())
        return total / count

    def run(self, model: Any, target: Any) -> list[ProbeRow]:
        mine = {name: self.states(model, name) for name in self.batches}
        theirs = {name: self.states(target, name) for name in ("forget", "retain")}
        lost = self.forget_logprob(target) - (own := self.forget_logprob(model))
        rows = []
        for depth in DEPTHS:
            layer = depth_layer(model, depth)
            forget, unseen = mine["forget"][layer], mine["unseen"][layer]
            recovery = None
            if lost >= MIN_LOST:
                with ablated(model, layer, difference_direction(forget, unseen)):
                    recovery = (self.forget_logprob(model) - own) / lost
            rows.append(ProbeRow(
                depth, layer, *probe_accuracy(forget, unseen, self.groups),
                shift(forget, theirs["forget"][layer]),
                shift(mine["retain"][layer], theirs["retain"][layer]), recovery,
            ))  # fmt: skip
        return rows
