"""Planner, worker subgraphs and responder: each worker declares the facts it owns."""
