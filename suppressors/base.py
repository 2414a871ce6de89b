"""The layer protocol: what a suppression layer may do to one request.

A layer may act before generation (answer directly by blocking, add a system instruction, attach
per-request controls for the vLLM plugin) and watch the output as it is produced (block it).
``RequestContext`` carries one request through the stack; layers share the matcher's verdict.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tokenizers import Tokenizer

from index.errors import ObliviateError
from index.matcher import Match, Matcher

if TYPE_CHECKING:
    from suppressors.artifacts import Artifacts


async def match(
    matcher: Matcher, texts: list[str], answering: frozenset[str] = frozenset()
) -> list[Match]:
    """``matcher.match`` from the event loop: on it when nothing must be waited for (the texts'
    embeddings are cached), else in a thread, so the loop never waits on the embedder."""
    matches = matcher.match_now(texts, answering=answering)
    if matches is None:
        matches = await asyncio.to_thread(matcher.match, texts, answering=answering)
    return matches


@dataclass
class RequestContext:
    """One request's passage through the stack."""

    texts: list[str]
    """The conversation's texts, oldest first (every message, not only the last)."""
    matches: list[Match] = field(default_factory=list)
    """Forget requests the conversation touches, strongest first (from the matcher)."""
    system_notes: list[str] = field(default_factory=list)
    """Instructions to prepend as a system message."""
    controls: dict[str, Any] = field(default_factory=dict)
    """Per-request controls for the vLLM plugin (merged into ``vllm_xargs``)."""
    acted: list[str] = field(default_factory=list)
    """Names of the layers that acted, in order."""
    blocked_by: str | None = None
    """Name of the layer that blocked the request or its output."""
    exempt: frozenset[str] = frozenset()
    """Forget requests this request's weights have removed already (hybrid arm): not enforced."""
    layers: list[Layer] = field(default_factory=list)
    """The stack's layers (its output watch runs them too)."""
    fail_open: bool = False
    """A failing check lets the request through (the arm is configured fail-open)."""
    only_scores: bool = False
    """The request generates nothing: it asks only for its prompt tokens' log-probabilities."""
    scored_in_model: set[str] = field(default_factory=set)
    """Forget requests that an in-model layer takes out of this request's forward pass (so out of
    its prompt log-probabilities, not only out of what it generates)."""
    unless_in_model: tuple[str, set[str]] | None = None
    """(layer, forget requests): that layer blocks the request once every layer has run, unless
    in-model layers took all those requests out of its forward pass."""

    def relevant(self, matches: list[Match]) -> list[Match]:
        """``matches`` without the exempt forget requests."""
        return [m for m in matches if m.request_id not in self.exempt] if self.exempt else matches

    def act(self, layer: str) -> None:
        if layer not in self.acted:
            self.acted.append(layer)


@dataclass
class LayerDeps:
    """What layers are built from (one set per gateway)."""

    matcher: Matcher
    artifacts: Artifacts | None = None
    """Per-forget-request vectors (in-model layers that need them)."""
    tokenizer: Tokenizer | None = None
    """The served model's tokenizer (layers that send token ids)."""


def spellings(tokenizer: Tokenizer, text: str) -> list[list[int]]:
    """``text``'s token ids, without and with a leading space (as the tokenizer splits words)."""
    return [tokenizer.encode(t, add_special_tokens=False).ids for t in (text, f" {text}")]


def load_tokenizer(weights: Path | str) -> Tokenizer:
    """The served model's tokenizer: its folder's ``tokenizer.json``, or a hub id's.

    The fast tokenizer's own library rather than transformers' AutoTokenizer: the same ids, and
    no transformers import (~20 s of a gateway start on a slow 2-core box).
    """
    local = Path(weights) / "tokenizer.json"
    if local.exists():
        return Tokenizer.from_file(str(local))
    return Tokenizer.from_pretrained(str(weights))


class UnfitModel(ObliviateError, ValueError):
    """The served model cannot run a configured in-model layer (say which, and why)."""


@dataclass(frozen=True)
class ModelInfo:
    """What the plugin reports of the served model (``obliviate_model_info``)."""

    num_hidden_layers: int
    hidden_size: int
    architecture: str
    tensor_parallel_size: int = 1


def decoder_layer(depth: int | float, num_hidden_layers: int, what: str) -> int:
    """A decoder layer (0-based) from ``depth``: an int is an index, a float in [0, 1) a fraction
    of the model's depth, so one setting fits models of any depth.

    >>> decoder_layer(0.2, 30, "steering.layer"), decoder_layer(0.2, 12, "steering.layer")
    (6, 2)
    >>> decoder_layer(20, 12, "steering.layer")
    Traceback (most recent call last):
    suppressors.base.UnfitModel: steering.layer = 20, but the served model has 12 decoder layers
    """
    if isinstance(depth, float):
        return min(num_hidden_layers - 1, round(depth * num_hidden_layers))
    if not 0 <= depth < num_hidden_layers:
        raise UnfitModel(
            f"{what} = {depth}, but the served model has {num_hidden_layers} decoder layers"
        )
    return depth


def check_depth(depth: int | float, what: str) -> None:
    """Refuse a depth no model has (``decoder_layer``'s rules), when the config is read."""
    if isinstance(depth, bool) or not isinstance(depth, int | float):
        raise ValueError(f"{what} must be a layer index or a fraction of depth, not {depth!r}")
    if isinstance(depth, float) and not 0 <= depth < 1:
        raise ValueError(f"{what} = {depth}: a fraction of depth is in [0, 1)")
    if isinstance(depth, int) and depth < 0:
        raise ValueError(f"{what} = {depth}: a layer index is >= 0")


@dataclass
class LayerConfig:
    """A layer without parameters; a layer's own config dataclass documents its fields."""


class Layer:
    """Base class: a layer overrides what it needs; the defaults do nothing."""

    name: ClassVar[str]
    config_class: ClassVar[type[LayerConfig]] = LayerConfig
    in_model: ClassVar[bool] = False
    """Acts inside vLLM through the plugin's hooks (the engine must have them installed)."""
    artifact_files: ClassVar[tuple[str, ...]] = ()
    """Per-forget-request files the layer needs (``suppressors.artifacts`` builds them)."""

    def __init__(self, deps: LayerDeps, config: LayerConfig):
        self.deps = deps
        self.matcher = deps.matcher
        self.config = config

    def fit_model(self, model: ModelInfo) -> None:
        """Adapt to the served model once its engine is up; raise ``UnfitModel`` if it cannot
        run this layer (an in-model layer's depth, say)."""

    def with_artifacts(self, ctx: RequestContext, limit: int) -> list[str]:
        """The matched forget requests whose artifact files for this layer are built."""
        artifacts = self.deps.artifacts
        assert artifacts is not None
        ready = [
            m.request_id
            for m in ctx.matches
            if all(artifacts.ready(m.request_id, name) for name in self.artifact_files)
        ]
        return ready[:limit]

    async def before(self, ctx: RequestContext) -> None:
        """Act on the request before generation (set ``ctx.blocked_by`` to block it)."""

    async def check_output(
        self, ctx: RequestContext, state: dict[str, Any], text: str, final: bool
    ) -> int | None:
        """Check one output so far: None blocks it, else how many characters may be released.

        ``state`` is this layer's scratch space for this output (one per choice); ``final`` is set
        once the whole output is known, and then a layer releases all of it or blocks.
        """
        return len(text)
