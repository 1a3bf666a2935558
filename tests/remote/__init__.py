"""A worker graph served elsewhere (its own `langgraph dev`), and the module declaring it."""
