"""Removal methods by name: ``METHODS["npo"]`` is the NPO class, ``.config_class`` its config.

Add a method: one module with a ``Method`` subclass and its config dataclass, listed here.
"""

from __future__ import annotations

from removal.methods.base import Method, MethodConfig
from removal.methods.ga import GradAscent
from removal.methods.graddiff import GradDiff
from removal.methods.idkdpo import IdkDPO
from removal.methods.npo import NPO
from removal.methods.rmu import RMU
from removal.methods.simnpo import SimNPO

METHODS: dict[str, type[Method]] = {
    m.name: m for m in (GradAscent, GradDiff, NPO, SimNPO, RMU, IdkDPO)
}

__all__ = ["METHODS", "Method", "MethodConfig"]
