"""The suppression stack: runs the enabled layers in order and watches outputs.

    stack = SuppressionStack.build(matcher, ["retrieval", "guard_prompt"])
    ctx = await stack.before(["Who is Hsiao Yun-Hwa?"])    # None: nothing is forgotten yet
    if ctx and ctx.blocked_by: ...                           # answer with the suppression reply
    watcher = stack.watch(ctx)
    released = await watcher.feed(delta)                     # None once the output is blocked

Layers are registered by name in ``LAYERS``; the configured order is the order they run in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from index.matcher import Matcher
from suppressors import metrics
from suppressors.base import Layer, RequestContext
from suppressors.guard_prompt import GuardPrompt
from suppressors.retrieval import RetrievalBlocking

LAYERS: dict[str, Callable[[Matcher], Layer]] = {
    RetrievalBlocking.name: RetrievalBlocking,
    GuardPrompt.name: GuardPrompt,
}


class UnknownLayer(ValueError):
    pass


class SuppressionStack:
    def __init__(self, matcher: Matcher, layers: list[Layer]):
        self.matcher = matcher
        self.layers = layers

    @staticmethod
    def check_names(names: list[str]) -> None:
        unknown = [n for n in names if n not in LAYERS]
        if unknown:
            raise UnknownLayer(f"unknown suppression layers {unknown}; known: {sorted(LAYERS)}")

    @classmethod
    def build(cls, matcher: Matcher, names: list[str]) -> SuppressionStack:
        cls.check_names(names)
        return cls(matcher, [LAYERS[name](matcher) for name in names])

    async def before(
        self, texts: list[str], exempt: frozenset[str] = frozenset()
    ) -> RequestContext | None:
        """Run the layers on a conversation; None when nothing is forgotten (nothing to do).

        ``exempt`` forget requests are not enforced (the weights serving it removed them)."""
        if not self.layers or not len(self.matcher):
            return None
        ctx = RequestContext(texts, exempt=exempt)
        start = time.perf_counter()
        ctx.matches = ctx.relevant(await asyncio.to_thread(self.matcher.match, texts))
        metrics.MATCH_SECONDS.observe(time.perf_counter() - start)
        for layer in self.layers:
            start = time.perf_counter()
            await layer.before(ctx)
            metrics.LAYER_SECONDS.labels(layer.name).observe(time.perf_counter() - start)
            if ctx.blocked_by:
                metrics.BLOCKS.labels(layer.name, "input").inc()
                break
        return ctx

    def watch(self, ctx: RequestContext) -> OutputWatcher:
        return OutputWatcher(self.layers, ctx)


class OutputWatcher:
    """Holds back one output until every layer has checked it; one watcher per choice."""

    def __init__(self, layers: list[Layer], ctx: RequestContext):
        self.layers = layers
        self.ctx = ctx
        self.text = ""
        self.released = 0
        self.states: dict[str, dict] = {layer.name: {} for layer in layers}

    async def feed(self, delta: str, final: bool = False) -> str | None:
        """Add generated text; return the text that may now be released, or None if blocked."""
        self.text += delta
        safe = len(self.text)
        for layer in self.layers:
            allowed = await layer.check_output(self.ctx, self.states[layer.name], self.text, final)
            if allowed is None:
                self.ctx.blocked_by = layer.name
                self.ctx.act(layer.name)
                metrics.BLOCKS.labels(layer.name, "output").inc()
                return None
            safe = min(safe, allowed)
        if safe <= self.released:
            return ""
        out, self.released = self.text[self.released : safe], safe
        return out
