"""Interlock graphs: state, settings, the supervisor graph, the CLI."""

__all__: list[str] = []
