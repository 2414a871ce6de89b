"""Arm selection: header rules, sticky weighted shares, routings that cannot be served, and the
routing shared through the database (two replicas, a restart, a pinned version)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.errors import Conflict, InvalidRequest, PermissionDenied
from gateway.routing.protocol import RoutingConfig
from gateway.routing.serving import Router
from index.store import ForgetStore
from removal.registry import Registry, VersionPinned


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(ForgetStore(f"sqlite:///{tmp_path / 'forget.db'}").engine)


def test_header_rules(registry: Registry) -> None:
    router = Router(RoutingConfig(), registry)
    assert router.select(None, admin=False, identity="sk-a") == "suppression"
    assert router.select("removal", admin=True, identity=None) == "removal"
    with pytest.raises(PermissionDenied):
        router.select("removal", admin=False, identity="sk-a")  # header is admin-only by default
    with pytest.raises(InvalidRequest):
        router.select("nothing", admin=True, identity=None)
    anyone = Router(RoutingConfig(header="anyone"), registry)
    assert anyone.select("hybrid", admin=False, identity=None) == "hybrid"
    with pytest.raises(PermissionDenied):
        anyone.select("baseline", admin=False, identity=None)  # audits only


def test_weights_are_sticky_shares(registry: Registry) -> None:
    router = Router(RoutingConfig(weights={"suppression": 0.7, "hybrid": 0.3}), registry)
    arms = [router.select(None, False, f"user-{i}") for i in range(400)]
    share = arms.count("hybrid") / len(arms)
    assert abs(share - 0.3) < 0.1  # binomial sd ~0.023 at n=400
    assert [router.select(None, False, f"user-{i}") for i in range(400)] == arms  # sticky
    assert router.select(None, False, None) == "suppression"  # no identity: the default


def test_bad_routings_are_refused(registry: Registry) -> None:
    for bad in ({"weights": {"baseline": 1}}, {"weights": {"removal": -1}}, {"default_arm": "x"}):
        with pytest.raises(ValidationError):
            RoutingConfig.model_validate(bad)
    router = Router(RoutingConfig(default_arm="removal"), registry)
    assert router.plan("suppression").stack
    with pytest.raises(Conflict, match="No model version"):
        router.plan("removal")
    with pytest.raises(Conflict, match="does not exist"):
        router.save(RoutingConfig(version="removal-9"))
    assert registry.routing() is None  # nothing stored


def test_the_routing_is_shared_and_survives_a_restart(tmp_path: Path, registry: Registry) -> None:
    a = Router.load(RoutingConfig(), registry)
    b = Router.load(RoutingConfig(default_arm="hybrid"), registry)  # its settings differ
    assert b.config.default_arm == "hybrid"  # nothing stored yet: its settings
    a.save(RoutingConfig(weights={"suppression": 1}))
    b.refresh()
    assert b.config.weights == {"suppression": 1} and b.config.default_arm == "suppression"
    restarted = Registry(ForgetStore(f"sqlite:///{tmp_path / 'forget.db'}").engine)
    assert Router.load(RoutingConfig(), restarted).config.weights == {"suppression": 1}


def test_a_version_the_routing_pins_is_not_deleted(registry: Registry) -> None:
    job = registry.create_job("npo", {}, ["fr_1"], parent=None)
    registry.create_version("removal-1", job, "/nowhere", {})
    Router(RoutingConfig(), registry).save(RoutingConfig(version="removal-1"))
    with pytest.raises(VersionPinned):
        registry.delete_version("removal-1")  # whichever replica asks: the pin is in the store
    Router(RoutingConfig(), registry).save(RoutingConfig())
    registry.delete_version("removal-1")
    assert registry.version("removal-1") is None
