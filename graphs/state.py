"""The state schema and value types (defined in `graphs.core.state`, re-exported here)."""

from graphs.core.state import *  # noqa: F403
from graphs.core.state import __all__  # noqa: F401
