"""A team's extension module that fails as it loads (a typo in its settings)."""

raise KeyError("WAREHOUSE_URL")
