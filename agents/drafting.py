"""The drafting crew: a CrewAI writer and editor word the answer (remote, governed, checked).

An extension module (`INTERLOCK_EXTENSIONS=agents.drafting`, `INTERLOCK_DRAFTING_URL=<server>`):
the crew runs in its own environment (`foreign/crewai/`, `make foreign`), gets its model through
Interlock's gateway with its own retries off, and is reached as a governed dependency
(`agents.drafter`). The output guard checks its text as it checks the template's; a refused
draft leaves the template's answer, and the verdict says why.
"""

from __future__ import annotations

from agents.drafter import remote_drafter
from tools.policy import DependencyPolicy

__all__ = ["DEPENDENCIES", "DRAFTER", "DRAFTERS", "DRAFTING"]

DRAFTING, DRAFTER = remote_drafter(
    name="drafting", graph_id="drafting",
    description="Words the answer for the customer (a CrewAI crew, remote)",
    # Two agents, two model calls at least: more time, one attempt (the model calls are
    # governed at the gateway; a second attempt here would multiply them).
    policy=DependencyPolicy(timeout=20.0, attempts=1, fail_max=3))
DEPENDENCIES = [DRAFTING]
DRAFTERS = [DRAFTER]
