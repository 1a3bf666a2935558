"""The control plane: dependency registrations and clients, the governor, the effects journal.

It knows nothing of workers, guards or the support desk (it imports only `graphs.core`).
Importing the package imports nothing else: `tools.governor`, `tools.toolbox` and the rest
load when used.
"""
