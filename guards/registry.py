"""The guard stages of the reference domain; `build_graph(guards=...)` accepts any other list."""

from __future__ import annotations

from guards.intake import INTAKE
from guards.output import OUTPUT
from guards.plan import PLAN
from guards.stages import GuardStage

__all__ = ["DEFAULT_GUARDS"]

DEFAULT_GUARDS: tuple[GuardStage, ...] = (INTAKE, PLAN, OUTPUT)
"""Intake on the request, the plan guard on the plan, the output guard on the answer."""
