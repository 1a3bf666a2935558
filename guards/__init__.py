"""Guard nodes and the policies they apply; their verdicts are data in state."""

__all__: list[str] = []
