"""The suppression stack: runs the enabled layers in order and watches outputs.

    stack = SuppressionStack.build(LayerDeps(matcher), ["retrieval", "guard_prompt"])
    ctx = await stack.before(["Who is Hsiao Yun-Hwa?"])    # None: nothing is forgotten yet
    if ctx and ctx.blocked_by: ...                           # answer with the suppression reply
    watcher = OutputWatcher(ctx)
    released = await watcher.feed(delta)                     # None once the output is blocked

Layers are registered by name in ``LAYERS``; the configured order is the order they run in. A
layer is named alone or with its parameters: ``{"name": "steering", "layer": 6, "scale": 4.0}``.

The stack fails closed: if the matcher (embedder, index) or a layer raises, ``before`` raises
``StackFailed`` and an output watch blocks, so nothing is answered unsuppressed by accident. A
stack built with ``fail_open=True`` (an operator's explicit choice per arm) serves such requests
unsuppressed instead, logging an error each time.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from index.errors import ObliviateError
from index.matcher import Matcher
from suppressors import metrics
from suppressors.base import Layer, LayerConfig, LayerDeps, ModelInfo, RequestContext, match
from suppressors.embedding_corruption import EmbeddingCorruption
from suppressors.guard_prompt import GuardPrompt
from suppressors.logit_difference import LogitDifference
from suppressors.ngram_penalty import NgramPenalty
from suppressors.retrieval import RetrievalBlocking
from suppressors.steering import Steering

LAYERS: dict[str, type[Layer]] = {
    layer.name: layer
    for layer in (
        RetrievalBlocking,
        GuardPrompt,
        Steering,
        EmbeddingCorruption,
        LogitDifference,
        NgramPenalty,
    )
}

LayerSpec = str | dict[str, Any]
log = logging.getLogger(__name__)


class UnknownLayer(ObliviateError, ValueError):
    pass


class StackFailed(ObliviateError):
    """The matcher or a layer failed: the request cannot be checked."""


def parse_specs(specs: list[LayerSpec]) -> list[tuple[type[Layer], LayerConfig]]:
    """Each layer's class and config; UnknownLayer names what is wrong."""
    parsed = []
    for spec in specs:
        params = {"name": spec} if isinstance(spec, str) else dict(spec)
        name = params.pop("name", None)
        if name not in LAYERS:
            raise UnknownLayer(f"unknown suppression layer {name!r}; known: {sorted(LAYERS)}")
        layer = LAYERS[name]
        fields = {f.name for f in dataclasses.fields(layer.config_class)}
        if unknown := sorted(set(params) - fields):
            raise UnknownLayer(f"layer {name!r} has no parameters {unknown}; see {sorted(fields)}")
        try:
            parsed.append((layer, layer.config_class(**params)))
        except (TypeError, ValueError) as exc:
            raise UnknownLayer(f"layer {name!r}: {exc}") from exc
    return parsed


class SuppressionStack:
    def __init__(self, matcher: Matcher, layers: list[Layer], fail_open: bool = False):
        self.matcher = matcher
        self.layers = layers
        self.fail_open = fail_open

    @classmethod
    def build(
        cls, deps: LayerDeps, specs: list[LayerSpec], fail_open: bool = False
    ) -> SuppressionStack:
        layers = [layer(deps, config) for layer, config in parse_specs(specs)]
        return cls(deps.matcher, layers, fail_open)

    def fit_model(self, model: ModelInfo) -> None:
        """Fit every layer to the served model; ``UnfitModel`` names one that cannot run on it."""
        for layer in self.layers:
            layer.fit_model(model)

    @property
    def watches(self) -> bool:
        """Whether ``before`` gives requests a context (their outputs are watched): some layer
        runs and something is forgotten."""
        return bool(self.layers) and len(self.matcher) > 0

    async def before(
        self, texts: list[str], exempt: frozenset[str] = frozenset(), only_scores: bool = False
    ) -> RequestContext | None:
        """Run the layers on a conversation; None when nothing is forgotten (nothing to do).

        ``exempt`` forget requests are not enforced (the weights serving it removed them).
        ``only_scores``: the request generates nothing and asks only for its prompt tokens'
        log-probabilities (see retrieval's ``score_in_model``)."""
        if not self.watches:
            return None
        ctx = RequestContext(
            texts, exempt=exempt, layers=self.layers, fail_open=self.fail_open,
            only_scores=only_scores,
        )  # fmt: skip
        try:
            start = time.perf_counter()
            ctx.matches = ctx.relevant(await match(self.matcher, texts))
            metrics.MATCH_SECONDS.observe(time.perf_counter() - start)
            for layer in self.layers:
                start = time.perf_counter()
                await layer.before(ctx)
                metrics.LAYER_SECONDS.labels(layer.name).observe(time.perf_counter() - start)
                if ctx.blocked_by:
                    break
            if ctx.unless_in_model:
                blocker, ids = ctx.unless_in_model
                if ids - ctx.scored_in_model:
                    ctx.blocked_by = blocker
                else:
                    ctx.acted.remove(blocker)
            if ctx.blocked_by:
                metrics.BLOCKS.labels(ctx.blocked_by, "input").inc()
        except Exception as exc:
            metrics.FAILURES.labels("input").inc()
            if not self.fail_open:
                log.exception("suppression failed: the request is refused (fail closed)")
                raise StackFailed(str(exc)) from exc
            log.exception("suppression failed: FAIL-OPEN arm serves the request unsuppressed")
            return None
        return ctx


class OutputWatcher:
    """Holds back one output until every layer of its stack has checked it; one per choice."""

    def __init__(self, ctx: RequestContext):
        self.layers = ctx.layers
        self.ctx = ctx
        self.text = ""
        self.released = 0
        self.checked = 0
        """How much of ``text`` the layers have checked (the rest came with ``check=False``)."""
        self.states: dict[str, dict] = {layer.name: {} for layer in self.layers}

    async def feed(self, delta: str, final: bool = False, check: bool = True) -> str | None:
        """Add generated text; return the text that may now be released, or None if blocked.
        ``check=False``: more text follows at once (the rest of a network read), so only add it;
        the next check covers it and nothing is released before."""
        self.text += delta
        if not check and not final:
            return ""
        self.checked = len(self.text)
        safe = len(self.text)
        for layer in self.layers:
            try:
                state = self.states[layer.name]
                allowed = await layer.check_output(self.ctx, state, self.text, final)
            except Exception:
                metrics.FAILURES.labels("output").inc()
                if not self.ctx.fail_open:
                    log.exception("output check failed: the output is blocked (fail closed)")
                    allowed = None
                else:
                    log.exception("output check failed: FAIL-OPEN arm releases it unchecked")
                    allowed = len(self.text)
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
