"""GradDiff: gradient ascent on the forget answers plus gradient descent on retain answers."""

from __future__ import annotations

from dataclasses import dataclass

from removal.methods.base import MethodConfig
from removal.methods.ga import GradAscent


@dataclass
class GradDiffConfig(MethodConfig):
    """Only the shared fields: ``retain_weight`` (1 by default) balances the two terms."""


class GradDiff(GradAscent):
    """Gradient ascent's loss, with the retain term switched on."""

    name = "graddiff"
    config_class = GradDiffConfig
