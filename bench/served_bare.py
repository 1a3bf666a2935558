"""The overhead bench's bare LangGraph graph, served by Aegra beside Interlock (benchmarks only).

The same routing as `bench/overhead.py`'s bare graph, behind one node that reads the user's
message, so that the server's run admission (messages only) takes it like Interlock's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

from langchain_core.messages import AnyMessage
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import BareState, Work, bare_graph  # noqa: E402


class Served(BareState, total=False):
    messages: Annotated[list[AnyMessage], add_messages]


def _adapt(state: Served) -> dict[str, Any]:
    return {"message": str(state["messages"][-1].content)}


_home = Path(os.environ.get("INTERLOCK_HOME", ".interlock"))
_builder: StateGraph[Any, Any, Any, Any] = StateGraph(Served)
_builder.add_node("adapt", _adapt)
_builder.add_node("bare", bare_graph(Work(_home), None))
_builder.add_edge(START, "adapt")
_builder.add_edge("adapt", "bare")
graph = _builder.compile()
