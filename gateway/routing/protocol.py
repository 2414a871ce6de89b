"""The routing of traffic between arms (``GET/PUT /admin/v1/routing``).

Arms: **suppression** (base weights + the layer stack), **removal** (a model version, no stack),
**hybrid** (a model version + the stack for the forget requests that version does not contain),
**baseline** (nothing: admin-only, for audits).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Arm = Literal["suppression", "removal", "hybrid", "baseline"]
ARM_HEADER = "x-obliviate-arm"
VERSION_HEADER = "x-obliviate-model-version"


class RoutingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_arm: Arm = Field("suppression", description="Arm of requests nothing else routes.")
    weights: dict[Arm, float] = Field(
        default_factory=dict,
        description="Traffic share per arm, sticky per API key or `user`; empty = default arm.",
    )
    header: Literal["admin", "anyone"] = Field(
        "admin", description="Who may pick an arm with the x-obliviate-arm header."
    )
    version: str | None = Field(
        None, description="Model version of the removal and hybrid arms; null = the latest."
    )

    @model_validator(mode="after")
    def sane_weights(self) -> RoutingConfig:
        if any(w < 0 for w in self.weights.values()):
            raise ValueError("weights must not be negative")
        if self.weights and not sum(self.weights.values()):
            raise ValueError("weights must not all be zero")
        if self.weights.get("baseline") or self.default_arm == "baseline":
            raise ValueError("the baseline arm is for audits: pick it per request as admin")
        return self
