"""Conversion between the API versions of one resource: objects are stored in one version and
served in the version a request names.

- autoscaling/v1 ↔ v2 HorizontalPodAutoscaler (v2 stored; v1 keeps what it cannot express in
  `autoscaling.alpha.kubernetes.io/*` annotations, as upstream does, so round trips lose nothing)
- core/v1 ↔ events.k8s.io/v1 Event (core stored)
- custom resources: strategy None, only apiVersion changes.

`to_storage` and `from_storage` return the object itself when nothing changes (lists are the hot
path) and a new dict otherwise; they never modify their argument.
"""

from __future__ import annotations

import copy
import json

from kybernetes.api.registry import Resource

from .watchcache import CachedEvent

METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/metrics"
CURRENT_METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/current-metrics"
CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"
BEHAVIOR_ANNOTATION = "autoscaling.alpha.kubernetes.io/behavior"
_HPA_ANNOTATIONS = (METRICS_ANNOTATION, CURRENT_METRICS_ANNOTATION, CONDITIONS_ANNOTATION,
                    BEHAVIOR_ANNOTATION)


def storage_api_version(r: Resource) -> str:
    """The apiVersion objects of `r` are kept in."""
    group = r.group if r.storage_group is None else r.storage_group
    if group != r.group:
        version = "v1"  # events.k8s.io/v1 → core v1, the only cross-group pair
    else:
        version = r.storage_version or r.version
    return f"{group}/{version}" if group else version


def to_storage(r: Resource, obj: dict) -> dict:
    return convert(obj, storage_api_version(r))


def from_storage(r: Resource, obj: dict) -> dict:
    return convert(obj, r.api_version)


def event_from_storage(r: Resource, ev: CachedEvent) -> CachedEvent:
    """A watch event in the watcher's version (its own encoding cache when converted)."""
    obj = from_storage(r, ev.obj)
    if obj is ev.obj:
        return ev
    prev = from_storage(r, ev.prev) if ev.prev is not None else None
    return CachedEvent(type=ev.type, key=ev.key, revision=ev.revision, obj=obj, prev=prev)


def convert(obj: dict, api_version: str) -> dict:
    have = obj.get("apiVersion")
    if have == api_version or not have:
        return obj
    kind = obj.get("kind")
    step = _CONVERTERS.get((kind, have, api_version))
    if step is not None:
        return step(obj)
    out = dict(obj)  # strategy None: the same fields under another apiVersion
    out["apiVersion"] = api_version
    return out


# --- HorizontalPodAutoscaler ------------------------------------------------------------------

def _is_cpu_utilization(m: dict) -> bool:
    res = m.get("resource") or {}
    return (m.get("type") == "Resource" and res.get("name") == "cpu"
            and (res.get("target") or {}).get("averageUtilization") is not None)


def _annotations(meta: dict) -> dict:
    return dict(meta.get("annotations") or {})


def _set_annotations(meta: dict, ann: dict) -> None:
    if ann:
        meta["annotations"] = ann
    else:
        meta.pop("annotations", None)


def _hpa_v2_to_v1(obj: dict) -> dict:
    out = copy.deepcopy(obj)
    out["apiVersion"] = "autoscaling/v1"
    spec = out.get("spec") or {}
    status = out.get("status")
    meta = out.setdefault("metadata", {})
    ann = _annotations(meta)
    metrics = spec.pop("metrics", None) or []
    behavior = spec.pop("behavior", None)
    other = []
    for m in metrics:
        if _is_cpu_utilization(m) and "targetCPUUtilizationPercentage" not in spec:
            spec["targetCPUUtilizationPercentage"] = m["resource"]["target"]["averageUtilization"]
        elif not _is_cpu_utilization(m):
            other.append(_metric_spec_v2_to_v1(m))
    for k in _HPA_ANNOTATIONS:
        ann.pop(k, None)
    if other:
        ann[METRICS_ANNOTATION] = json.dumps(other, separators=(",", ":"))
    if behavior is not None:
        ann[BEHAVIOR_ANNOTATION] = json.dumps(behavior, separators=(",", ":"))
    if isinstance(status, dict):
        current = status.pop("currentMetrics", None) or []
        conditions = status.pop("conditions", None) or []
        for m in current:
            res = m.get("resource") or {}
            util = (res.get("current") or {}).get("averageUtilization")
            if m.get("type") == "Resource" and res.get("name") == "cpu" and util is not None:
                status["currentCPUUtilizationPercentage"] = util
        # Kept whole: the raw values of the CPU metric too, as upstream does.
        if current:
            ann[CURRENT_METRICS_ANNOTATION] = json.dumps(
                [_metric_status_v2_to_v1(m) for m in current], separators=(",", ":"))
        if conditions:
            ann[CONDITIONS_ANNOTATION] = json.dumps(conditions, separators=(",", ":"))
    _set_annotations(meta, ann)
    return out


def _hpa_v1_to_v2(obj: dict) -> dict:
    out = copy.deepcopy(obj)
    out["apiVersion"] = "autoscaling/v2"
    spec = out.setdefault("spec", {})
    meta = out.setdefault("metadata", {})
    ann = _annotations(meta)
    metrics = [_metric_spec_v1_to_v2(m) for m in _loads(ann.pop(METRICS_ANNOTATION, None))]
    target = spec.pop("targetCPUUtilizationPercentage", None)
    if target is not None:
        metrics.append({"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}})
    if metrics:
        spec["metrics"] = metrics
    behavior = ann.pop(BEHAVIOR_ANNOTATION, None)
    if behavior:
        try:
            spec["behavior"] = json.loads(behavior)
        except ValueError:
            pass
    status = out.get("status")
    current = [_metric_status_v1_to_v2(m) for m in _loads(ann.pop(CURRENT_METRICS_ANNOTATION, None))]
    conditions = _loads(ann.pop(CONDITIONS_ANNOTATION, None))
    if isinstance(status, dict):
        util = status.pop("currentCPUUtilizationPercentage", None)
        if not current and util is not None:
            current = [{"type": "Resource", "resource": {
                "name": "cpu", "current": {"averageUtilization": util}}}]
        if current:
            status["currentMetrics"] = current
        if conditions:
            status["conditions"] = conditions
    _set_annotations(meta, ann)
    return out


def _loads(raw: str | None) -> list:
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        return []
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


# autoscaling/v1 spells metrics the v2beta1 way: targetAverageUtilization, targetValue, ...

def _metric_spec_v2_to_v1(m: dict) -> dict:
    t = m.get("type")
    out: dict = {"type": t}
    if t in ("Resource", "ContainerResource"):
        key = "resource" if t == "Resource" else "containerResource"
        src = m.get(key) or {}
        target = src.get("target") or {}
        out[key] = _drop_none({"name": src.get("name"), "container": src.get("container"),
                               "targetAverageUtilization": target.get("averageUtilization"),
                               "targetAverageValue": target.get("averageValue")})
    elif t == "Pods":
        src = m.get("pods") or {}
        metric, target = src.get("metric") or {}, src.get("target") or {}
        out["pods"] = _drop_none({"metricName": metric.get("name"), "selector": metric.get("selector"),
                                  "targetAverageValue": target.get("averageValue")})
    elif t == "Object":
        src = m.get("object") or {}
        metric, target = src.get("metric") or {}, src.get("target") or {}
        out["object"] = _drop_none({"target": src.get("describedObject"),
                                    "metricName": metric.get("name"),
                                    "selector": metric.get("selector"),
                                    "targetValue": target.get("value"),
                                    "averageValue": target.get("averageValue")})
    elif t == "External":
        src = m.get("external") or {}
        metric, target = src.get("metric") or {}, src.get("target") or {}
        out["external"] = _drop_none({"metricName": metric.get("name"),
                                      "metricSelector": metric.get("selector"),
                                      "targetValue": target.get("value"),
                                      "targetAverageValue": target.get("averageValue")})
    return out


def _target(value=None, average=None, utilization=None) -> dict:
    if utilization is not None:
        return {"type": "Utilization", "averageUtilization": utilization}
    if average is not None:
        return {"type": "AverageValue", "averageValue": average}
    return _drop_none({"type": "Value", "value": value})


def _metric_spec_v1_to_v2(m: dict) -> dict:
    t = m.get("type")
    out: dict = {"type": t}
    if t in ("Resource", "ContainerResource"):
        key = "resource" if t == "Resource" else "containerResource"
        src = m.get(key) or {}
        out[key] = _drop_none({"name": src.get("name"), "container": src.get("container"),
                               "target": _target(average=src.get("targetAverageValue"),
                                                 utilization=src.get("targetAverageUtilization"))})
    elif t == "Pods":
        src = m.get("pods") or {}
        out["pods"] = {"metric": _drop_none({"name": src.get("metricName"), "selector": src.get("selector")}),
                       "target": _target(average=src.get("targetAverageValue"))}
    elif t == "Object":
        src = m.get("object") or {}
        out["object"] = {"describedObject": src.get("target") or {},
                         "metric": _drop_none({"name": src.get("metricName"), "selector": src.get("selector")}),
                         "target": _target(value=src.get("targetValue"), average=src.get("averageValue"))}
    elif t == "External":
        src = m.get("external") or {}
        out["external"] = {"metric": _drop_none({"name": src.get("metricName"),
                                                 "selector": src.get("metricSelector")}),
                           "target": _target(value=src.get("targetValue"),
                                             average=src.get("targetAverageValue"))}
    return out


def _metric_status_v2_to_v1(m: dict) -> dict:
    t = m.get("type")
    out: dict = {"type": t}
    if t in ("Resource", "ContainerResource"):
        key = "resource" if t == "Resource" else "containerResource"
        src = m.get(key) or {}
        cur = src.get("current") or {}
        out[key] = _drop_none({"name": src.get("name"), "container": src.get("container"),
                               "currentAverageUtilization": cur.get("averageUtilization"),
                               "currentAverageValue": cur.get("averageValue")})
    elif t == "Pods":
        src = m.get("pods") or {}
        metric, cur = src.get("metric") or {}, src.get("current") or {}
        out["pods"] = _drop_none({"metricName": metric.get("name"), "selector": metric.get("selector"),
                                  "currentAverageValue": cur.get("averageValue")})
    elif t == "Object":
        src = m.get("object") or {}
        metric, cur = src.get("metric") or {}, src.get("current") or {}
        out["object"] = _drop_none({"target": src.get("describedObject"),
                                    "metricName": metric.get("name"),
                                    "selector": metric.get("selector"),
                                    "currentValue": cur.get("value"),
                                    "averageValue": cur.get("averageValue")})
    elif t == "External":
        src = m.get("external") or {}
        metric, cur = src.get("metric") or {}, src.get("current") or {}
        out["external"] = _drop_none({"metricName": metric.get("name"),
                                      "metricSelector": metric.get("selector"),
                                      "currentValue": cur.get("value"),
                                      "currentAverageValue": cur.get("averageValue")})
    return out


def _metric_status_v1_to_v2(m: dict) -> dict:
    t = m.get("type")
    out: dict = {"type": t}
    if t in ("Resource", "ContainerResource"):
        key = "resource" if t == "Resource" else "containerResource"
        src = m.get(key) or {}
        out[key] = _drop_none({"name": src.get("name"), "container": src.get("container"),
                               "current": _drop_none({
                                   "averageUtilization": src.get("currentAverageUtilization"),
                                   "averageValue": src.get("currentAverageValue")})})
    elif t == "Pods":
        src = m.get("pods") or {}
        out["pods"] = {"metric": _drop_none({"name": src.get("metricName"), "selector": src.get("selector")}),
                       "current": _drop_none({"averageValue": src.get("currentAverageValue")})}
    elif t == "Object":
        src = m.get("object") or {}
        out["object"] = {"describedObject": src.get("target") or {},
                         "metric": _drop_none({"name": src.get("metricName"), "selector": src.get("selector")}),
                         "current": _drop_none({"value": src.get("currentValue"),
                                                "averageValue": src.get("averageValue")})}
    elif t == "External":
        src = m.get("external") or {}
        out["external"] = {"metric": _drop_none({"name": src.get("metricName"),
                                                 "selector": src.get("metricSelector")}),
                           "current": _drop_none({"value": src.get("currentValue"),
                                                  "averageValue": src.get("currentAverageValue")})}
    return out


# --- Event --------------------------------------------------------------------------------------

# events.k8s.io/v1 name ← core/v1 name (fields with the same name in both are copied as they are)
_EVENT_RENAMES = {
    "regarding": "involvedObject", "note": "message", "reportingController": "reportingComponent",
    "deprecatedFirstTimestamp": "firstTimestamp", "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count", "deprecatedSource": "source",
}
_EVENT_SAME = ("metadata", "eventTime", "series", "related", "action", "reason", "type",
               "reportingInstance")


def _event_core_to_events(obj: dict) -> dict:
    out: dict = {"kind": "Event", "apiVersion": "events.k8s.io/v1"}
    for k in _EVENT_SAME:
        if k in obj:
            out[k] = copy.deepcopy(obj[k])
    for new, old in _EVENT_RENAMES.items():
        v = obj.get(old)
        if v not in (None, "", {}, 0):
            out[new] = copy.deepcopy(v)
    out.setdefault("eventTime", None)
    return out


def _event_events_to_core(obj: dict) -> dict:
    out: dict = {"kind": "Event", "apiVersion": "v1"}
    for k in _EVENT_SAME:
        if k in obj:
            out[k] = copy.deepcopy(obj[k])
    for new, old in _EVENT_RENAMES.items():
        if new in obj:
            out[old] = copy.deepcopy(obj[new])
    # core/v1 always carries these (no omitempty upstream)
    out.setdefault("involvedObject", {})
    out.setdefault("source", {})
    for k in ("firstTimestamp", "lastTimestamp", "eventTime"):
        out.setdefault(k, None)
    out.setdefault("reportingComponent", "")
    out.setdefault("reportingInstance", "")
    return out


_CONVERTERS = {
    ("HorizontalPodAutoscaler", "autoscaling/v2", "autoscaling/v1"): _hpa_v2_to_v1,
    ("HorizontalPodAutoscaler", "autoscaling/v1", "autoscaling/v2"): _hpa_v1_to_v2,
    ("Event", "v1", "events.k8s.io/v1"): _event_core_to_events,
    ("Event", "events.k8s.io/v1", "v1"): _event_events_to_core,
}
