"""KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1) → profiles.

Each profile starts from upstream's default plugins, then applies `multiPoint` and per-point
`enabled` / `disabled` lists (`disabled: [{name: "*"}]` clears the defaults of that point),
score weights, and `pluginConfig` args.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .framework import CONFIG_POINTS
from .plugins import DEFAULT_PLUGINS, REGISTRY

DEFAULT_SCHEDULER = "default-scheduler"


@dataclass
class ProfileConfig:
    scheduler_name: str = DEFAULT_SCHEDULER
    points: dict[str, list[str]] = field(default_factory=dict)    # point → plugin names
    weights: dict[str, int] = field(default_factory=dict)
    args: dict[str, dict] = field(default_factory=dict)
    percentage_of_nodes_to_score: int | None = None


@dataclass
class SchedulerConfig:
    profiles: list[ProfileConfig]
    percentage_of_nodes_to_score: int = 0
    initial_backoff: float = 1.0
    max_backoff: float = 10.0


def _implements(name: str, point: str) -> bool:
    cls = REGISTRY[name]
    if point == "queue_sort":
        return hasattr(cls, "sort_key")
    return hasattr(cls, point)


def build_profile(doc: dict | None = None) -> ProfileConfig:
    doc = doc or {}
    prof = ProfileConfig(scheduler_name=doc.get("schedulerName") or DEFAULT_SCHEDULER,
                         percentage_of_nodes_to_score=doc.get("percentageOfNodesToScore"))
    plugins = doc.get("plugins") or {}
    multi = plugins.get("multiPoint") or {}
    names = [n for n, _ in DEFAULT_PLUGINS]
    weights = {n: w for n, w in DEFAULT_PLUGINS if w}
    disabled = {d["name"] for d in multi.get("disabled") or ()}
    if "*" in disabled:
        names = []
    names = [n for n in names if n not in disabled]
    for e in multi.get("enabled") or ():
        if e["name"] not in REGISTRY:
            raise ValueError(f'plugin "{e["name"]}" does not exist')
        if e["name"] not in names:
            names.append(e["name"])
        if e.get("weight"):
            weights[e["name"]] = int(e["weight"])
    for cfg_name, point in CONFIG_POINTS.items():
        lst = [n for n in names if _implements(n, point)]
        spec = plugins.get(cfg_name) or {}
        off = {d["name"] for d in spec.get("disabled") or ()}
        lst = [] if "*" in off else [n for n in lst if n not in off]
        for e in spec.get("enabled") or ():
            n = e["name"]
            if n not in REGISTRY:
                raise ValueError(f'plugin "{n}" does not exist')
            if n not in lst:
                lst.append(n)
            if point == "score" and e.get("weight"):
                weights[n] = int(e["weight"])
        prof.points[point] = lst
    prof.weights = {n: weights.get(n, 1) for n in prof.points.get("score", [])}
    for pc in doc.get("pluginConfig") or ():
        prof.args[pc["name"]] = pc.get("args") or {}
    return prof


def load(path: str | Path | None = None, text: str | None = None) -> SchedulerConfig:
    if path is not None:
        text = Path(path).read_text()
    doc = yaml.safe_load(text) if text else {}
    doc = doc or {}
    profiles = [build_profile(p) for p in doc.get("profiles") or [{}]]
    return SchedulerConfig(
        profiles=profiles,
        percentage_of_nodes_to_score=int(doc.get("percentageOfNodesToScore") or 0),
        initial_backoff=float(doc.get("podInitialBackoffSeconds", 1)),
        max_backoff=float(doc.get("podMaxBackoffSeconds", 10)))
