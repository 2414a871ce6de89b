"""Embedding corruption (ECO-style), inside vLLM: the forgotten names' tokens become noise.

When the matcher attributes a conversation to forget requests, the request carries the token ids of
those requests' names (with and without a leading space, as the tokenizer splits words); the plugin
adds noise of ``scale`` × the embedding's RMS to those tokens' embeddings wherever they occur in
that request, so the model reads the question without being able to recall who it is about.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from suppressors.base import Layer, LayerConfig, RequestContext
from suppressors.vllm_plugin import CORRUPT

MAX_SEQUENCES = 32


@dataclass
class EmbeddingCorruptionConfig(LayerConfig):
    scale: float = 4.0
    """Noise norm, in RMS of the token's embedding."""


class EmbeddingCorruption(Layer):
    name = "embedding_corruption"
    config_class = EmbeddingCorruptionConfig
    in_model = True
    config: EmbeddingCorruptionConfig

    async def before(self, ctx: RequestContext) -> None:
        sequences: list[list[int]] = []
        for match in ctx.matches:
            for term in self.matcher.terms.get(match.request_id) or []:
                sequences += [s for s in self._token_ids(term) if s not in sequences]
        if sequences:
            ctx.controls[CORRUPT] = {"token_ids": sequences[:MAX_SEQUENCES],
                                     "scale": self.config.scale}  # fmt: skip
            ctx.act(self.name)

    @lru_cache(maxsize=4096)  # noqa: B019 (one layer object per gateway)
    def _token_ids(self, term: str) -> tuple[list[int], ...]:
        encode = self.deps.tokenizer.encode
        return tuple(encode(text, add_special_tokens=False) for text in (term, f" {term}"))
