"""N-gram penalty, inside vLLM: the forgotten texts' own continuations become unlikely.

For the matched forget requests whose token ids are built (``suppressors.artifacts``), the request
carries ``obliviate_ngram_penalty``: wherever the last n - 1 tokens read or written begin an n-gram
of those requests' texts (answers, name, documents), the plugin takes ``beta`` off the logits of
the tokens that would complete it, and ``vocabulary_beta`` off the logits of the requests' own
vocabulary (their tokens but the common ones, ``suppressors.artifacts``) at every position. Other
subjects' facts keep their likelihood, where noise and logit difference lower every subject's
alike: on the TOFU target this is the one suppression whose truth ratios come near the retain
model's (``evals.experiments.truth_ratio_sweep``, variant ``ngram``). It acts on prompt
log-probabilities too, so a scoring request that touches those forget requests is scored under it
(``scored_in_model``).
"""

from __future__ import annotations

from dataclasses import dataclass

from suppressors.base import Layer, LayerConfig, RequestContext
from suppressors.vllm_plugin import ANSWERS_FILE, NGRAM_PENALTY
from suppressors.vllm_plugin.controls import MAX_NGRAM

MAX_REQUESTS = 8


@dataclass
class NgramPenaltyConfig(LayerConfig):
    n: int = 5
    """Tokens per n-gram: the penalty starts n - 1 tokens into a forgotten text. On the TOFU
    target, n 5 held forget quality at 0.58-0.99 over four splits; n 3 at 0.27-0.92."""
    beta: float = 8.0
    """Logit penalty. On the TOFU target β 8 brought the true answers' likelihood to the retain
    model's; β 7 or 9 already scored far lower."""
    vocabulary_beta: float = 0.75
    """Logit penalty on the requests' own vocabulary, at every position. A model that knows a
    subject finds other subjects' facts about it unlikely, where a model that never saw it does
    not; this moves probability from the subject's own words to the rest. On the TOFU target,
    0.75 (with β 8) raised forget quality offline on six of seven splits, three of them not used
    to choose it, and lowered it on one (0.58-0.99 to 0.77-0.99); 0 turns it off."""

    def __post_init__(self) -> None:
        if not 2 <= self.n <= MAX_NGRAM:
            raise ValueError(f"n must be from 2 to {MAX_NGRAM}, not {self.n}")
        for name in ("beta", "vocabulary_beta"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, not {getattr(self, name)}")


class NgramPenalty(Layer):
    name = "ngram_penalty"
    config_class = NgramPenaltyConfig
    in_model = True
    artifact_files = (ANSWERS_FILE,)
    config: NgramPenaltyConfig

    async def before(self, ctx: RequestContext) -> None:
        if ready := self.with_artifacts(ctx, MAX_REQUESTS):
            config = self.config
            ctx.controls[NGRAM_PENALTY] = {"requests": ready, "n": config.n, "beta": config.beta,
                                           "vocabulary_beta": config.vocabulary_beta}  # fmt: skip
            ctx.act(self.name)
            ctx.scored_in_model.update(ready)
