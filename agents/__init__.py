"""Planner, worker subgraphs and responder: each worker declares the facts it owns."""

__all__: list[str] = []
