"""Logit difference (ULD-style), inside vLLM: subtract an assistant that knows the forget set.

For the matched forget requests whose assistant head is built (``suppressors.assistant``), the
request carries ``obliviate_logit_diff``: the plugin reads the base's state at the head's layer,
computes the assistants' logits and samples from ``l_base - alpha · l_assistant`` (the assistant's
logits count only where the base gives a token at least 0.1 × its top probability, as in ULD).
"""

from __future__ import annotations

from dataclasses import dataclass

from suppressors.base import Layer, LayerConfig, ModelInfo, RequestContext, UnfitModel
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

    def fit_model(self, model: ModelInfo) -> None:
        if model.tensor_parallel_size > 1:
            raise UnfitModel(
                f"logit_difference multiplies by the whole LM head, which tensor parallelism "
                f"shards by vocabulary (tensor_parallel_size {model.tensor_parallel_size}): "
                f"serve it on one GPU per replica or leave the layer out"
            )

    async def before(self, ctx: RequestContext) -> None:
        if ready := self.with_artifacts(ctx, MAX_REQUESTS):
            ctx.controls[LOGIT_DIFF] = {"requests": ready, "alpha": self.config.alpha}
            ctx.act(self.name)
