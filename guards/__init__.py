"""Guard nodes and the policies they apply; their verdicts are data in state."""
