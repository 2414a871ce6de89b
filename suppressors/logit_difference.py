"""Logit difference (ULD-style), inside vLLM: subtract an assistant that knows the forget set.

For the matched forget requests whose assistant head is built (``suppressors.assistant``), the
request carries ``obliviate_logit_diff``: the plugin reads the base's state at the head's layer,
computes the assistants' logits and samples from ``l_base - alpha · l_assistant`` (the assistant's
logits count only where the base gives a token at least 0.1 × its top probability, as in ULD).
"""

from __future__ import annotations

from dataclasses import dataclass

from suppressors.base import Layer, LayerConfig, RequestContext
from suppressors.vllm_plugin import ASSISTANT_FILE, LOGIT_DIFF

MAX_REQUESTS = 4


@dataclass
class LogitDifferenceConfig(LayerConfig):
    alpha: float = 1.0
    """Weight of the assistant's logits."""


class LogitDifference(Layer):
    name = "logit_difference"
    config_class = LogitDifferenceConfig
    in_model = True
    artifact_files = (ASSISTANT_FILE,)
    config: LogitDifferenceConfig

    async def before(self, ctx: RequestContext) -> None:
        if ready := self.with_artifacts(ctx, MAX_REQUESTS):
            ctx.controls[LOGIT_DIFF] = {"requests": ready, "alpha": self.config.alpha}
            ctx.act(self.name)
