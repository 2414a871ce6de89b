"""Which arm serves a request, and what that arm means for the request.

    router = Router(RoutingConfig(weights={"suppression": 0.9, "hybrid": 0.1}), path)
    router.select(header=None, admin=False, identity="sk-team-a")   # sticky per identity

Order: the ``x-obliviate-arm`` header (admin callers, or anyone if the config allows; baseline
only for admins), else a weighted choice fixed by a hash of the caller's identity (the body's
``user``, else the API key), else the default arm. The config is kept in ``routing.json`` in the
data directory, so a PUT survives restarts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from gateway.errors import Conflict, InvalidRequest, PermissionDenied
from gateway.routing.protocol import ARM_HEADER, Arm, RoutingConfig
from removal.registry import ModelVersion, Registry


@dataclass(frozen=True)
class ArmPlan:
    """How one request is served."""

    arm: Arm
    version: ModelVersion | None
    """The model version whose adapter serves it (removal, hybrid); None = base weights."""
    stack: bool
    """Whether the suppression stack runs."""
    exempt: frozenset[str] = frozenset()
    """Forget requests the stack leaves to the version's weights (hybrid)."""


class Router:
    def __init__(self, config: RoutingConfig, path: Path):
        self.config = config
        self.path = path

    @classmethod
    def load(cls, default: RoutingConfig, path: Path) -> Router:
        if path.exists():
            return cls(RoutingConfig.model_validate_json(path.read_text()), path)
        return cls(default, path)

    def save(self, config: RoutingConfig) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(config.model_dump_json(indent=2))
        tmp.replace(self.path)
        self.config = config

    def select(self, header: str | None, admin: bool, identity: str | None) -> Arm:
        if header is not None:
            if header not in get_args(Arm):
                raise InvalidRequest(
                    f"Unknown arm {header!r}; arms: {list(get_args(Arm))}.", param=ARM_HEADER
                )
            if not admin and (header == "baseline" or self.config.header == "admin"):
                raise PermissionDenied(f"Choosing the {header!r} arm needs the admin token.")
            return header  # type: ignore[return-value]
        weights = {arm: w for arm, w in self.config.weights.items() if w > 0}
        if not weights or identity is None:
            return self.config.default_arm
        point = int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8]) / 2**64
        point *= sum(weights.values())
        for arm, weight in sorted(weights.items()):
            if point < weight:
                return arm
            point -= weight
        return sorted(weights)[-1]

    def plan(self, arm: Arm, registry: Registry) -> ArmPlan:
        if arm in ("suppression", "baseline"):
            return ArmPlan(arm, None, stack=arm == "suppression")
        version = self.version(registry)
        exempt = frozenset(version.forget_request_ids) if arm == "hybrid" else frozenset()
        return ArmPlan(arm, version, stack=arm == "hybrid", exempt=exempt)

    def version(self, registry: Registry) -> ModelVersion:
        name = self.config.version
        version = registry.version(name) if name else registry.latest_version()
        if version is None:
            raise Conflict(
                "No model version to serve yet: run a removal job first."
                if name is None
                else f"The routed model version {name!r} does not exist."
            )
        return version
