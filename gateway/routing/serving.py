"""Which arm serves a request, and what that arm means for the request.

    router = Router(RoutingConfig(weights={"suppression": 0.9, "hybrid": 0.1}), path)
    router.select(header=None, admin=False, identity="sk-team-a")   # sticky per identity

Order: the ``x-obliviate-arm`` header (admin callers, or anyone if the config allows; baseline
only for admins), else a weighted choice fixed by a hash of the caller's identity (the body's
``user``, else the API key), else the default arm. The config is a row of the shared database
(``removal.registry``): a PUT on one replica survives restarts, and every other replica applies it
at its next ``refresh`` (the gateway refreshes every ``routing_sync_s``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
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
    def __init__(self, config: RoutingConfig, registry: Registry, revision: int = 0):
        self.config = config
        self.registry = registry
        self.revision = revision
        """The stored routing's revision that ``config`` is (0: none stored, the settings')."""

    @classmethod
    def load(cls, default: RoutingConfig, registry: Registry) -> Router:
        """The stored routing, else ``default`` (the settings') until a PUT stores one."""
        router = cls(default, registry)
        router.refresh()
        return router

    def refresh(self) -> None:
        """Take the stored routing if another replica changed it (one integer read if not)."""
        if self.registry.routing_revision() == self.revision:
            return
        row = self.registry.routing()
        if row is not None:
            self.config, self.revision = RoutingConfig.model_validate(row.config), row.revision

    def save(self, config: RoutingConfig) -> None:
        """Store ``config`` for every replica; a Conflict if it routes to a missing version."""
        if config.version is not None or {"removal", "hybrid"} & (
            {a for a, w in config.weights.items() if w > 0} | {config.default_arm}
        ):
            served_version(config, self.registry)  # the version must exist now
        row = self.registry.save_routing(config.model_dump(mode="json"))
        self.config, self.revision = config, row.revision

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

    def plan(self, arm: Arm) -> ArmPlan:
        if arm in ("suppression", "baseline"):
            return ArmPlan(arm, None, stack=arm == "suppression")
        version = served_version(self.config, self.registry)
        exempt = frozenset(version.forget_request_ids) if arm == "hybrid" else frozenset()
        return ArmPlan(arm, version, stack=arm == "hybrid", exempt=exempt)


def served_version(config: RoutingConfig, registry: Registry) -> ModelVersion:
    """The version the removal and hybrid arms serve under ``config``."""
    name = config.version
    version = registry.version(name) if name else registry.latest_version()
    if version is None:
        raise Conflict(
            "No model version to serve yet: run a removal job first."
            if name is None
            else f"The routed model version {name!r} does not exist."
        )
    return version
