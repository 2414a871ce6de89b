"""Retrieval blocking: refuse a conversation, or cut an output, that touches a forget request.

Before generation the whole conversation is matched (every message, so a name given two turns
earlier still counts). While the output is produced, names are searched in each new stretch with a
hold-back window as long as the longest name, so no prefix of a forgotten name reaches the client;
when the conversation was related to a forget request, each finished sentence is also matched
densely and only checked sentences are released.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from index.matcher import BLOCK
from suppressors.base import Layer, LayerConfig, RequestContext, match

_SENTENCE_END = re.compile(r"[.!?\n]\s")
_MARGIN = 8


@dataclass
class RetrievalBlockingConfig(LayerConfig):
    score_in_model: bool = False
    """A request that only scores its prompt (echo with ``logprobs`` 0 or 1, or
    ``prompt_logprobs``, and at most one generated token: how TOFU and lm-eval's loglikelihood
    score a text) is served, not blocked, when the stack's in-model layers take every forget
    request it touches out of its forward pass (steering or the n-gram penalty once built,
    embedding corruption with ``scope="prompt"``): its log-probabilities, its top alternatives
    and its one token are then the suppressed model's instead of none. They leak as much as
    those layers let through (forget quality in the evaluation harness measures it). Off:
    withheld (HTTP 400 ``content_suppressed``)."""


class RetrievalBlocking(Layer):
    name = "retrieval"
    config_class = RetrievalBlockingConfig
    config: RetrievalBlockingConfig

    async def before(self, ctx: RequestContext) -> None:
        blocking = {m.request_id for m in ctx.matches if m.action == BLOCK}
        if not blocking:
            return
        ctx.act(self.name)
        if ctx.only_scores and self.config.score_in_model:
            ctx.unless_in_model = (self.name, blocking)
        else:
            ctx.blocked_by = self.name

    async def check_output(
        self, ctx: RequestContext, state: dict[str, Any], text: str, final: bool
    ) -> int | None:
        state.setdefault("names_upto", 0)
        state.setdefault("sentences_upto", 0)
        state.setdefault("open_from", 0)
        # From where a name could have started: the last check's end less the longest name, or
        # further back where a name (spaced out, say) could still be starting.
        lexicon = self.matcher.lexicon
        since = max(0, min(state["open_from"], state["names_upto"] - lexicon.max_chars - _MARGIN))
        while since > 0 and text[since - 1].isalnum():
            since -= 1  # from a word's start: a cut word's last letter would join spaced letters
        window = text[since:]
        # In a conversation about a forgotten subject, a part of its name (a surname alone) is as
        # telling as the whole name; so are its other names (a relative, a work: per sentence).
        # What the conversation itself says tells nothing new.
        about = {m.request_id for m in ctx.matches if not m.other_subject}
        # Elsewhere only whole names block, and a whole name that ends in text an earlier check
        # saw was looked for then, unless the names changed since. A part's owner can change
        # with the words after it ("Atkinson Lit" is someone else, "Atkinson Literary Award" may
        # be his): in a related conversation every check looks at the whole window.
        seen = state.get("generation") == lexicon.generation and not about
        new_from = max(0, state["names_upto"] - since) if seen else 0
        state["generation"] = lexicon.generation
        found = ctx.relevant(self.matcher.match([window], dense=False, new_from=new_from))
        given = self._given(ctx, state, about)
        told = {t for m in found if m.request_id in about for t in m.terms} - given
        if _blocks(found) or told:
            return None
        state["names_upto"] = len(text)
        # Out goes all but what could still be the start of a forgotten name.
        state["open_from"] = self.matcher.open_from(text, state["open_from"])
        safe = len(text) if final else state["open_from"]
        if not ctx.matches:
            return safe
        # Related conversation: release only sentences that passed the dense check too.
        start = state["sentences_upto"]
        ends = [m.end() for m in _SENTENCE_END.finditer(text, start)]
        end = len(text) if final else (ends[-1] if ends else start)
        if end > start:
            if set(self.matcher.named_details(text[start:end], about)) - given:
                return None
            sentences = _split(text[start:end])
            size = self.matcher.config.max_texts
            for i in range(0, len(sentences), size):
                batch = sentences[i : i + size]
                matches = await match(self.matcher, batch, frozenset(about))
                if _blocks(ctx.relevant(matches)):
                    return None
            state["sentences_upto"] = end
        return min(safe, state["sentences_upto"])

    def _given(self, ctx: RequestContext, state: dict[str, Any], about: set[str]) -> set[str]:
        """The parts of names and other names of ``about`` that the conversation itself says
        (once per output)."""
        if "given" not in state:
            conversation = "\n".join(ctx.texts)
            named = self.matcher.match([conversation], dense=False) if about else []
            details = self.matcher.named_details(conversation, about) if about else []
            state["given"] = {t for m in named for t in m.terms} | set(details)
        return state["given"]


def _blocks(matches: list) -> bool:
    return any(m.action == BLOCK for m in matches)


def _split(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?\n])\s+", text) if s.strip()]
