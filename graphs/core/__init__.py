"""The shared core: state contracts (plan, fact, actor, request, records), errors, clock.

It imports nothing of Interlock's above it, so the control plane (`tools/`, `checkpoints/`),
the workers (`agents/`) and the guards (`guards/`) can all stand on it.
"""
