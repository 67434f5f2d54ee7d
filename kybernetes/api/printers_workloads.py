"""Table printers for pods and the workload controllers (apps, batch, autoscaling, policy)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kybernetes.api.duration import age, human_duration, parse_time
from kybernetes.api.printers import (
    AGE, NAME, Column, Obj, Printer, created, first_condition, format_label_selector, format_labels, meta,
    selector_string,
)

CONTAINERS: Column = ("Containers", "string", "Names of each container in the template.", 1)
IMAGES: Column = ("Images", "string", "Images referenced by each container in the template.", 1)


def _containers(template: Obj | None) -> tuple[str, str]:
    """layoutContainerCells: container names and images, each joined by commas."""
    containers = ((template or {}).get("spec") or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)


# --- pods ------------------------------------------------------------------------------------


def _restartable(container: Obj | None) -> bool:
    """A sidecar: an init container with restartPolicy Always."""
    return container is not None and container.get("restartPolicy") == "Always"


def _last_termination(status: Obj) -> datetime | None:
    terminated = (status.get("lastState") or {}).get("terminated")
    return parse_time(terminated.get("finishedAt")) if terminated is not None else None


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    return b if b is not None and b > a else a


def _exit_text(terminated: Obj) -> str:
    signal = terminated.get("signal") or 0
    return f"Signal:{signal}" if signal else f"ExitCode:{terminated.get('exitCode', 0)}"


def _condition_true(conditions: list[Obj] | None, ctype: str) -> bool:
    cond = first_condition(conditions, ctype)
    return cond is not None and cond.get("status") == "True"


def pod_status(pod: Obj, now: datetime) -> tuple[str, int, int, str]:
    """(STATUS reason, ready containers, total containers, RESTARTS text) as printPod computes them."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    init_specs = spec.get("initContainers") or []
    by_name = {c.get("name"): c for c in init_specs}
    total = len(spec.get("containers") or []) + sum(1 for c in init_specs if _restartable(c))
    conditions = status.get("conditions") or []
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    if any(c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated" for c in conditions):
        reason = "SchedulingGated"

    ready = restarts = sidecar_restarts = 0
    last: datetime | None = None
    sidecar_last: datetime | None = None
    initializing = False
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        count = cs.get("restartCount") or 0
        finished = _last_termination(cs)
        restarts += count
        last = _later(last, finished)
        sidecar = _restartable(by_name.get(cs.get("name")))
        if sidecar:
            sidecar_restarts += count
            sidecar_last = _later(sidecar_last, finished)
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated is not None and (terminated.get("exitCode") or 0) == 0:
            continue
        if sidecar and cs.get("started"):
            ready += 1 if cs.get("ready") else 0
            continue
        if terminated is not None:
            reason = "Init:" + (terminated.get("reason") or _exit_text(terminated))
        elif waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break  # the first unfinished init container decides

    if not initializing or _condition_true(conditions, "Initialized"):
        restarts, last = sidecar_restarts, sidecar_last
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += cs.get("restartCount") or 0
            last = _later(last, _last_termination(cs))
            state = cs.get("state") or {}
            terminated, waiting = state.get("terminated"), state.get("waiting")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None:
                reason = terminated.get("reason") or _exit_text(terminated)
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        # a pod whose last container completed while others still run is not "Completed"
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(conditions, "Ready") else "NotReady"

    deleting = meta(pod).get("deletionTimestamp")
    if deleting and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif deleting and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_text = str(restarts)
    if restarts and last is not None:
        restarts_text = f"{restarts} ({human_duration(now - last)} ago)"
    return reason, ready, total, restarts_text


def _pod_ip(status: Obj) -> str:
    # v1 → internal conversion: podIP is authoritative, podIPs fills in when it is unset
    ips = status.get("podIPs") or []
    return status.get("podIP") or (ips[0].get("ip", "") if ips else "") or "<none>"


def _readiness_gates(spec: Obj, status: Obj) -> str:
    gates = spec.get("readinessGates") or []
    if not gates:
        return "<none>"
    conditions = status.get("conditions") or []
    true = sum(1 for g in gates if _condition_true(conditions, g.get("conditionType")))
    return f"{true}/{len(gates)}"


def _pod(pod: Obj, now: datetime) -> list[Any]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    reason, ready, total, restarts = pod_status(pod, now)
    return [meta(pod).get("name", ""), f"{ready}/{total}", reason, restarts, created(pod, now),
            _pod_ip(status), spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>",
            _readiness_gates(spec, status)]


def pod_row_conditions(pod: Obj) -> list[Obj] | None:
    """Row conditions marking finished pods (kubectl hides them unless --show-all)."""
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Succeeded":
        return [{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]
    return None


# --- controllers -----------------------------------------------------------------------------


def _replicas(obj: Obj) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else value


def _deployment(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(spec.get("template"))
    selector = selector_string(spec.get("selector"))
    return [meta(obj).get("name", ""), f"{status.get('readyReplicas') or 0}/{_replicas(obj)}",
            status.get("updatedReplicas") or 0, status.get("availableReplicas") or 0, created(obj, now),
            names, images, "<invalid>" if selector is None else selector]


def _replica_set(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(spec.get("template"))
    return [meta(obj).get("name", ""), _replicas(obj), status.get("replicas") or 0, status.get("readyReplicas") or 0,
            created(obj, now), names, images, format_label_selector(spec.get("selector"))]


def _replication_controller(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(spec.get("template"))
    return [meta(obj).get("name", ""), _replicas(obj), status.get("replicas") or 0, status.get("readyReplicas") or 0,
            created(obj, now), names, images, format_labels(spec.get("selector"))]


def _stateful_set(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(spec.get("template"))
    return [meta(obj).get("name", ""), f"{status.get('readyReplicas') or 0}/{_replicas(obj)}", created(obj, now),
            names, images]


def _daemon_set(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    template = spec.get("template") or {}
    names, images = _containers(template)
    counts = [status.get(k) or 0 for k in ("desiredNumberScheduled", "currentNumberScheduled", "numberReady",
                                            "updatedNumberScheduled", "numberAvailable")]
    return [meta(obj).get("name", ""), *counts, format_labels((template.get("spec") or {}).get("nodeSelector")),
            created(obj, now), names, images, format_label_selector(spec.get("selector"))]


def _job_status(obj: Obj) -> str:
    conditions = (obj.get("status") or {}).get("conditions") or []
    if _condition_true(conditions, "Complete"):
        return "Complete"
    if _condition_true(conditions, "Failed"):
        return "Failed"
    if meta(obj).get("deletionTimestamp"):
        return "Terminating"
    if _condition_true(conditions, "Suspended"):
        return "Suspended"
    if _condition_true(conditions, "FailureTarget"):
        return "FailureTarget"
    return "Running"


def _job(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    succeeded = status.get("succeeded") or 0
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    duration = "" if start is None else human_duration((end or now) - start)
    names, images = _containers(spec.get("template"))
    return [meta(obj).get("name", ""), _job_status(obj), completions, duration, created(obj, now), names, images,
            format_label_selector(spec.get("selector"))]


def _cron_job(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    last = status.get("lastScheduleTime")
    suspend = spec.get("suspend")
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    names, images = _containers(job_spec.get("template"))
    return [meta(obj).get("name", ""), spec.get("schedule", ""), spec.get("timeZone") or "<none>",
            "<unset>" if suspend is None else ("True" if suspend else "False"), len(status.get("active") or []),
            "<none>" if last is None else age(last, now), created(obj, now), names, images,
            format_label_selector(job_spec.get("selector"))]


def _pod_template(obj: Obj, now: datetime) -> list[Any]:
    template = obj.get("template") or {}
    names, images = _containers(template)
    return [meta(obj).get("name", ""), names, images, format_labels((template.get("metadata") or {}).get("labels"))]


def _pdb(obj: Obj, now: datetime) -> list[Any]:
    spec = obj.get("spec") or {}
    min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
    return [meta(obj).get("name", ""), "N/A" if min_available is None else str(min_available),
            "N/A" if max_unavailable is None else str(max_unavailable),
            (obj.get("status") or {}).get("disruptionsAllowed") or 0, created(obj, now)]


def _controller_revision(obj: Obj, now: datetime) -> list[Any]:
    owner = next((r for r in meta(obj).get("ownerReferences") or [] if r.get("controller")), None)
    controller = "<none>"
    if owner is not None:
        api_version = owner.get("apiVersion", "")
        group = api_version.split("/")[0] if "/" in api_version else ""
        kind = owner.get("kind", "")
        qualified = f"{kind}.{group}" if group else kind
        controller = f"{qualified.lower()}/{owner.get('name', '')}" if qualified else owner.get("name", "")
    return [meta(obj).get("name", ""), controller, obj.get("revision") or 0, created(obj, now)]


# --- horizontal pod autoscalers --------------------------------------------------------------


def _v1_hpa_metrics(spec: Obj, status: Obj) -> tuple[list[Obj], list[Obj]]:
    """autoscaling/v1 keeps one CPU target; express it as the v2 metric the printer reads."""
    target = spec.get("targetCPUUtilizationPercentage")
    target = 80 if target is None else target
    specs = [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}]
    current = status.get("currentCPUUtilizationPercentage")
    statuses = [] if current is None else [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": current}}}]
    return specs, statuses


def _q(value: Any) -> str:
    return "<nil>" if value is None else str(value)


def _hpa_metric(spec: Obj, status: Obj | None) -> str:
    kind = spec.get("type")
    field = {"External": "external", "Pods": "pods", "Object": "object", "Resource": "resource",
             "ContainerResource": "containerResource"}.get(kind or "")
    if field is None:
        return "<unknown type>"
    source = spec.get(field) or {}
    target = source.get("target") or {}
    seen = (status or {}).get(field)
    current_values = (seen or {}).get("current") or {}
    if kind == "Pods":
        current = _q(current_values.get("averageValue")) if seen is not None else "<unknown>"
        return f"{current}/{_q(target.get('averageValue'))}"
    if kind in ("External", "Object"):
        if target.get("averageValue") is not None:
            average = current_values.get("averageValue")
            current = _q(average) if seen is not None and average is not None else "<unknown>"
            return f"{current}/{_q(target['averageValue'])} (avg)"
        current = _q(current_values.get("value")) if seen is not None else "<unknown>"
        return f"{current}/{_q(target.get('value'))}"
    name = source.get("name", "")
    if target.get("averageValue") is not None:
        current = _q(current_values.get("averageValue")) if seen is not None else "<unknown>"
        return f"{name}: {current}/{target['averageValue']}"
    utilization = current_values.get("averageUtilization")
    current = f"{utilization}%" if seen is not None and utilization is not None else "<unknown>"
    wanted = target.get("averageUtilization")
    return f"{name}: {current}/{'<auto>' if wanted is None else f'{wanted}%'}"


def hpa_targets(obj: Obj) -> str:
    """formatHPAMetrics: up to two "current/target" entries, then "+ N more..."."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if obj.get("apiVersion") == "autoscaling/v1" or "targetCPUUtilizationPercentage" in spec:
        specs, statuses = _v1_hpa_metrics(spec, status)
    else:
        specs, statuses = spec.get("metrics") or [], status.get("currentMetrics") or []
    if not specs:
        return "<none>"
    shown = [_hpa_metric(s, statuses[i] if i < len(statuses) else None) for i, s in enumerate(specs)]
    if len(shown) > 2:
        return f"{', '.join(shown[:2])} + {len(shown) - 2} more..."
    return ", ".join(shown)


def _hpa(obj: Obj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    min_pods = spec.get("minReplicas")
    return [meta(obj).get("name", ""), f"{ref.get('kind', '')}/{ref.get('name', '')}", hpa_targets(obj),
            "<unset>" if min_pods is None else str(min_pods), spec.get("maxReplicas") or 0,
            status.get("currentReplicas") or 0, created(obj, now)]


_SELECTOR_APPS = ("Selector", "string", "@apps.v1.ReplicaSetSpec.selector", 1)

WORKLOAD_PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "pods"): ([NAME, ("Ready", "string", "The aggregate readiness state of this pod for accepting traffic.", 0),
                    ("Status", "string", "The aggregate status of the containers in this pod.", 0),
                    ("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.", 0),
                    AGE, ("IP", "string", "@core.v1.PodStatus.podIP", 1), ("Node", "string", "@core.v1.PodSpec.nodeName", 1),
                    ("Nominated Node", "string", "@core.v1.PodStatus.nominatedNodeName", 1),
                    ("Readiness Gates", "string", "@core.v1.PodSpec.readinessGates", 1)], _pod),
    ("", "podtemplates"): ([NAME, ("Containers", "string", "Names of each container in the template.", 0),
                            ("Images", "string", "Images referenced by each container in the template.", 0),
                            ("Pod Labels", "string", "The labels for the pod template.", 0)], _pod_template),
    ("", "replicationcontrollers"): ([NAME, ("Desired", "integer", "@core.v1.ReplicationControllerSpec.replicas", 0),
                                      ("Current", "integer", "@core.v1.ReplicationControllerStatus.replicas", 0),
                                      ("Ready", "integer", "@core.v1.ReplicationControllerStatus.readyReplicas", 0),
                                      AGE, CONTAINERS, IMAGES,
                                      ("Selector", "string", "@core.v1.ReplicationControllerSpec.selector", 1)],
                                     _replication_controller),
    ("apps", "replicasets"): ([NAME, ("Desired", "integer", "@apps.v1.ReplicaSetSpec.replicas", 0),
                               ("Current", "integer", "@apps.v1.ReplicaSetStatus.replicas", 0),
                               ("Ready", "integer", "@apps.v1.ReplicaSetStatus.readyReplicas", 0),
                               AGE, CONTAINERS, IMAGES, _SELECTOR_APPS], _replica_set),
    ("apps", "deployments"): ([NAME, ("Ready", "string", "Number of the pod with ready state", 0),
                               ("Up-to-date", "string", "@apps.v1.DeploymentStatus.updatedReplicas", 0),
                               ("Available", "string", "@apps.v1.DeploymentStatus.availableReplicas", 0),
                               AGE, CONTAINERS, IMAGES, ("Selector", "string", "@apps.v1.DeploymentSpec.selector", 1)],
                              _deployment),
    ("apps", "statefulsets"): ([NAME, ("Ready", "string", "Number of the pod with ready state", 0), AGE, CONTAINERS, IMAGES],
                               _stateful_set),
    ("apps", "daemonsets"): ([NAME, ("Desired", "integer", "@apps.v1.DaemonSetStatus.desiredNumberScheduled", 0),
                              ("Current", "integer", "@apps.v1.DaemonSetStatus.currentNumberScheduled", 0),
                              ("Ready", "integer", "@apps.v1.DaemonSetStatus.numberReady", 0),
                              ("Up-to-date", "integer", "@apps.v1.DaemonSetStatus.updatedNumberScheduled", 0),
                              ("Available", "integer", "@apps.v1.DaemonSetStatus.numberAvailable", 0),
                              ("Node Selector", "string", "@core.v1.PodSpec.nodeSelector", 0), AGE, CONTAINERS, IMAGES,
                              ("Selector", "string", "@apps.v1.DaemonSetSpec.selector", 1)], _daemon_set),
    ("apps", "controllerrevisions"): ([NAME, ("Controller", "string", "Controller of the object", 0),
                                       ("Revision", "string", "@apps.v1.ControllerRevision.revision", 0), AGE],
                                      _controller_revision),
    ("batch", "jobs"): ([NAME, ("Status", "string", "Status of the job.", 0),
                         ("Completions", "string", "@batch.v1.JobStatus.succeeded", 0),
                         ("Duration", "string", "Time required to complete the job.", 0), AGE, CONTAINERS, IMAGES,
                         ("Selector", "string", "@batch.v1.JobSpec.selector", 1)], _job),
    ("batch", "cronjobs"): ([NAME, ("Schedule", "string", "@batch.v1.CronJobSpec.schedule", 0),
                             ("Timezone", "string", "@batch.v1.CronJobSpec.timeZone", 0),
                             ("Suspend", "boolean", "@batch.v1.CronJobSpec.suspend", 0),
                             ("Active", "integer", "@batch.v1.CronJobStatus.active", 0),
                             ("Last Schedule", "string", "@batch.v1.CronJobStatus.lastScheduleTime", 0), AGE,
                             CONTAINERS, IMAGES, ("Selector", "string", "@batch.v1.JobSpec.selector", 1)], _cron_job),
    ("policy", "poddisruptionbudgets"): ([NAME, ("Min Available", "string", "The minimum number of pods that must be available.", 0),
                                          ("Max Unavailable", "string", "The maximum number of pods that may be unavailable.", 0),
                                          ("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time.", 0),
                                          AGE], _pdb),
    ("autoscaling", "horizontalpodautoscalers"): ([NAME, ("Reference", "string", "@autoscaling.v2.HorizontalPodAutoscalerSpec.scaleTargetRef", 0),
                                                   ("Targets", "string", "@autoscaling.v2.HorizontalPodAutoscalerSpec.metrics", 0),
                                                   ("MinPods", "string", "@autoscaling.v2.HorizontalPodAutoscalerSpec.minReplicas", 0),
                                                   ("MaxPods", "string", "@autoscaling.v2.HorizontalPodAutoscalerSpec.maxReplicas", 0),
                                                   ("Replicas", "string", "@autoscaling.v2.HorizontalPodAutoscalerStatus.currentReplicas", 0),
                                                   AGE], _hpa),
}
