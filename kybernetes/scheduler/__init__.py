"""The scheduler: framework, queue, cache, plugins (see scheduler.py)."""
