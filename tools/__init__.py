"""Dependency clients, the resilience layer and the simulators (knows nothing of workers)."""

from tools.governor import CallContext, Governor
from tools.toolbox import Toolbox, build_toolbox

__all__ = ["CallContext", "Governor", "Toolbox", "build_toolbox"]
