"""Arm selection: header rules, sticky weighted shares, and routings that cannot be served."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.errors import Conflict, InvalidRequest, PermissionDenied
from gateway.routing.protocol import RoutingConfig
from gateway.routing.serving import Router
from index.store import ForgetStore
from removal.registry import Registry


def test_header_rules(tmp_path: Path) -> None:
    router = Router(RoutingConfig(), tmp_path / "routing.json")
    assert router.select(None, admin=False, identity="sk-a") == "suppression"
    assert router.select("removal", admin=True, identity=None) == "removal"
    with pytest.raises(PermissionDenied):
        router.select("removal", admin=False, identity="sk-a")  # header is admin-only by default
    with pytest.raises(InvalidRequest):
        router.select("nothing", admin=True, identity=None)
    anyone = Router(RoutingConfig(header="anyone"), tmp_path / "routing.json")
    assert anyone.select("hybrid", admin=False, identity=None) == "hybrid"
    with pytest.raises(PermissionDenied):
        anyone.select("baseline", admin=False, identity=None)  # audits only


def test_weights_are_sticky_shares(tmp_path: Path) -> None:
    router = Router(
        RoutingConfig(weights={"suppression": 0.7, "hybrid": 0.3}), tmp_path / "routing.json"
    )
    arms = [router.select(None, False, f"user-{i}") for i in range(400)]
    share = arms.count("hybrid") / len(arms)
    assert abs(share - 0.3) < 0.1  # binomial sd ~0.023 at n=400
    assert [router.select(None, False, f"user-{i}") for i in range(400)] == arms  # sticky
    assert router.select(None, False, None) == "suppression"  # no identity: the default


def test_bad_routings_are_refused(tmp_path: Path) -> None:
    for bad in ({"weights": {"baseline": 1}}, {"weights": {"removal": -1}}, {"default_arm": "x"}):
        with pytest.raises(ValidationError):
            RoutingConfig.model_validate(bad)
    router = Router(RoutingConfig(default_arm="removal"), tmp_path / "routing.json")
    registry = Registry(ForgetStore("sqlite:///:memory:").engine)
    assert router.plan("suppression", registry).stack
    with pytest.raises(Conflict, match="No model version"):
        router.plan("removal", registry)


def test_saved_routing_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    Router.load(RoutingConfig(), path).save(RoutingConfig(weights={"suppression": 1}))
    assert Router.load(RoutingConfig(), path).config.weights == {"suppression": 1}
