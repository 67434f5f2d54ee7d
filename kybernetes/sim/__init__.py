"""Simulated nodes (kwok-style hollow kubelets): Node objects with Leases and heartbeats, and the
lifecycle of pods bound to them, played through the API alone (no containers run)."""

__all__ = ["NodeTemplate", "SimNodes", "Timing"]


def __getattr__(name: str):
    # Lazy, so `kyb --help` does not import the HTTP client just to list subcommands.
    if name == "SimNodes":
        from .nodes import SimNodes
        return SimNodes
    if name == "NodeTemplate":
        from .objects import NodeTemplate
        return NodeTemplate
    if name == "Timing":
        from .podstatus import Timing
        return Timing
    raise AttributeError(name)
