"""A team's guard stage: requests that name a competitor are answered by people, not the desk."""

from __future__ import annotations

import re

from graphs.core.clock import iso
from graphs.core.state import InterlockState, Verdict
from guards.stages import Check, GuardStage, StageDeps, StageResult

_NAMES = re.compile(r"\b(megamart|shopzilla)\b", re.IGNORECASE)


def _build(deps: StageDeps) -> Check:
    async def competitor(state: InterlockState) -> StageResult:
        request = state["request"]
        named = _NAMES.findall(request["text"])
        verdict = Verdict(
            guard="competitor", passed=not named, action="refuse" if named else "allow",
            reasons=[f"competitor_named: {named[0]}; a person answers this"] if named
            else ["no competitor named"], fact_ids=[], step_id=None, turn=request["turn"],
            at=iso(deps.clock.now()))
        update = {"status": "refused", "error": {
            "code": "refused", "message": "A member of our team will answer you about that."}
            } if named else {}
        return StageResult(verdicts=[verdict], update=update)

    return competitor


COMPETITOR = GuardStage(name="competitor", at="request", build=_build)
GUARDS = [COMPETITOR]  # what INTERLOCK_EXTENSIONS reads
