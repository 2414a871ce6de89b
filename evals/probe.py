"""Is it removal or suppression? A representation probe of weights we hold (the survey's check).

    probe = RepresentationProbe(tokenizer, forget, retain, unseen)
    rows = probe.run(model, target)       # one row per depth

The survey's claim is that gradient-ascent "removal" teaches a model to *detect* forget data and
degrade its answer, rather than to lose what it knew. Three readings of the hidden states of
forget, retain and unseen QA (mean over the answer's tokens) at several depths tell the cases
apart:

- ``probe_accuracy``: a linear probe's cross-validated accuracy separating forget from unseen
  text. A model that learnt to detect forget data separates them better than the retain model,
  which never saw either;
- ``forget_shift`` / ``retain_shift``: how far the states moved from the target's (1 - cosine,
  mean over examples). Removal that re-steers forget text moves its states, and not retain's;
- ``ablation_recovery``: project the model's own forget-vs-unseen direction (difference of
  means) out of the residual stream at that depth, and see how much of the forget answers' lost
  log-probability comes back (the share of the gap to the target). Knowledge that a direction
  merely hides comes back; knowledge that is gone does not.

The suppression arm serves the target's weights (its layers act on text, or on the target's
states per request), so its states are the target's: by construction it moves nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from evals.data import QA
from index.pairs import collate, encode
from removal.examples import answer_logprob

DEPTHS = (0.25, 0.5, 0.75, 1.0)
"""Fractions of the decoder's depth that are read."""


@dataclass
class ProbeRow:
    depth: float
    layer: int
    probe_accuracy: float
    forget_shift: float
    retain_shift: float
    ablation_recovery: float | None
    """None where the model lost nothing to recover (its forget log-probability is the target's)."""


def probe_accuracy(positive: torch.Tensor, negative: torch.Tensor, folds: int = 5) -> float:
    """Cross-validated accuracy of a logistic regression telling the two sets of vectors apart."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = torch.cat([positive, negative]).float().numpy()
    labels = [1] * len(positive) + [0] * len(negative)
    folds = min(folds, len(positive), len(negative))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    split = StratifiedKFold(folds, shuffle=True, random_state=0)
    return float(cross_val_score(model, features, labels, cv=split).mean())


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


class RepresentationProbe:
    def __init__(self, tokenizer: Any, forget: list[QA], retain: list[QA], unseen: list[QA]):
        pad = tokenizer.pad_token_id
        self.batches = {
            name: collate([encode(tokenizer, qa.question, qa.answer) for qa in pairs], pad)
            for name, pairs in (("forget", forget), ("retain", retain), ("unseen", unseen))
        }

    def states(self, model: Any, name: str) -> list[torch.Tensor]:
        """Per decoder layer, its output's mean over each answer's tokens: the residual stream
        the ablation acts on (the model's own hidden states end after its final norm)."""
        ids, mask, labels = self.batches[name]
        outputs: list[torch.Tensor] = []

        def keep(_module: Any, _args: Any, output: Any) -> None:
            outputs.append(output[0] if isinstance(output, tuple) else output)

        handles = [layer.register_forward_hook(keep) for layer in decoder_layers(model)]
        try:
            with torch.no_grad():
                model(input_ids=ids, attention_mask=mask)
        finally:
            for handle in handles:
                handle.remove()
        answer = (labels != -100).unsqueeze(-1).float()
        return [(h.float() * answer).sum(1) / answer.sum(1) for h in outputs]

    def forget_logprob(self, model: Any) -> float:
        """Mean log-probability of the forget answers' tokens."""
        with torch.no_grad():
            total, count = answer_logprob(model, *self.batches["forget"])
        return float(total.sum() / count.sum())

    def run(self, model: Any, target: Any) -> list[ProbeRow]:
        mine = {name: self.states(model, name) for name in self.batches}
        theirs = {name: self.states(target, name) for name in ("forget", "retain")}
        lost = self.forget_logprob(target) - (own := self.forget_logprob(model))
        depth_count = len(decoder_layers(model))
        rows = []
        for depth in DEPTHS:
            layer = max(0, round(depth * depth_count) - 1)
            forget, unseen = mine["forget"][layer], mine["unseen"][layer]
            recovery = None
            if abs(lost) > 1e-3:
                with ablated(model, layer, difference_direction(forget, unseen)):
                    recovery = (self.forget_logprob(model) - own) / lost
            rows.append(ProbeRow(
                depth, layer, probe_accuracy(forget, unseen),
                shift(forget, theirs["forget"][layer]),
                shift(mine["retain"][layer], theirs["retain"][layer]), recovery,
            ))  # fmt: skip
        return rows
