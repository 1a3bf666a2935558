"""The graph the LangGraph server serves (`langgraph.json` points here): its only job.

Built when the server imports this module, from the environment's settings, with the server's
checkpointer. Nothing else imports it: importing `graphs.supervisor` builds nothing.
"""

from __future__ import annotations

from graphs.supervisor import InterlockGraph, build_graph

__all__ = ["graph"]

graph: InterlockGraph = build_graph()
"""The served instance: settings from the environment; the server's checkpointer."""
