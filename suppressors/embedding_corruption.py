"""Embedding corruption (ECO-style), inside vLLM: the forgotten names' tokens become noise.

When the matcher attributes a conversation to forget requests, the request carries the token ids of
those requests' names (with and without a leading space, as the tokenizer splits words); the plugin
adds noise of ``scale`` × the embedding's RMS to those tokens' embeddings wherever they occur in
that request, so the model reads the question without being able to recall who it is about. With
``scope="prompt"`` (ECO's own choice) every prompt token but the first is corrupted too: the model
answers, and scores a text, as if it could not read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from suppressors.base import Layer, LayerConfig, RequestContext, spellings
from suppressors.vllm_plugin import CORRUPT

MAX_SEQUENCES = 32


@dataclass
class EmbeddingCorruptionConfig(LayerConfig):
    scale: float = 4.0
    """Noise norm, in RMS of the token's embedding."""
    scope: Literal["names", "prompt"] = "names"
    """Tokens corrupted: the forgotten names' wherever they occur, or also every prompt token but
    the first (the attention sink). Only ``prompt`` takes every matched forget request out of the
    forward pass, names or not, so only it lets retrieval's ``score_in_model`` serve a request."""

    def __post_init__(self) -> None:
        if self.scope not in ("names", "prompt"):
            raise ValueError(f"scope must be 'names' or 'prompt', not {self.scope!r}")


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
        prompt = self.config.scope == "prompt"
        if sequences or (prompt and ctx.matches):
            ctx.controls[CORRUPT] = {"token_ids": sequences[:MAX_SEQUENCES],
                                     "scale": self.config.scale, "prompt": prompt}  # fmt: skip
            ctx.act(self.name)
            if prompt:
                ctx.scored_in_model.update(m.request_id for m in ctx.matches)

    @lru_cache(maxsize=4096)  # noqa: B019 (one layer object per gateway)
    def _token_ids(self, term: str) -> tuple[list[int], ...]:
        return tuple(spellings(self.deps.tokenizer, term))
