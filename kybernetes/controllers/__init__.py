"""One module per controller, each a level-triggered `reconcile(key)` (see client/controller.py)."""
