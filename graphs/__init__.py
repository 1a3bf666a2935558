"""Interlock graphs: state, settings, the supervisor graph, the CLI."""
