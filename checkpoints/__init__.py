"""Checkpointer factory, history and lineage over LangGraph checkpoints."""
