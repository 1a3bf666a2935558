"""Checkpointer factory, history and lineage over LangGraph checkpoints."""

__all__: list[str] = []
