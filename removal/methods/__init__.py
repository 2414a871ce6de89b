"""Removal methods by name: ``METHODS["npo"]`` is the NPO class, ``.config_class`` its config.

Add a method: one module with a ``Method`` subclass and its config dataclass, listed here.
"""

from __future__ import annotations

from removal.methods.base import Method, MethodConfig
from removal.methods.ga import GradAscent
from removal.methods.graddiff import GradDiff
from removal.methods.idkdpo import IdkDPO
from removal.methods.memsel import MemSel
from removal.methods.npo import NPO
from removal.methods.rmu import RMU
from removal.methods.satimp import SatImp
from removal.methods.simnpo import SimNPO
from removal.methods.task_arithmetic import TaskArithmetic
from removal.methods.undial import UNDIAL
from removal.methods.wga import WGA

METHODS: dict[str, type[Method]] = {
    m.name: m
    for m in (
        GradAscent, GradDiff, NPO, SimNPO, RMU, IdkDPO,
        # Token-level: weighting or picking the tokens of a forgotten answer.
        WGA, SatImp, MemSel,
        UNDIAL, TaskArithmetic,
    )
}  # fmt: skip

__all__ = ["METHODS", "Method", "MethodConfig"]
