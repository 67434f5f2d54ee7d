"""Pod status from what the runtime reports: phase, conditions, container statuses.

Pure: the pod worker gathers the runtime's view (`Observed`) and the reasons it is waiting
(image pulls, back-offs, config errors); `pod_status` turns them into status as the kubelet
writes it (pkg/kubelet/kubelet_pods.go generateAPIPodStatus, pkg/kubelet/status).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

RUNNING, EXITED, CREATED = "running", "exited", "created"


@dataclass
class Instance:
    """One run of a container (a CRI container)."""
    id: str
    name: str
    attempt: int
    state: str
    created_at: int = 0   # ns
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    image: str = ""
    image_ref: str = ""


@dataclass
class Observed:
    sandbox_ready: bool = False
    pod_ip: str = ""
    host_ip: str = ""
    # container name → its runs, newest first
    runs: dict[str, list[Instance]] = field(default_factory=dict)
    # container name → (reason, message) it waits for (ErrImagePull, CrashLoopBackOff, ...)
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)
    ready: dict[str, bool] = field(default_factory=dict)  # readiness probe results (default True)
    started_probe: dict[str, bool] = field(default_factory=dict)


def rfc3339(ns: int) -> str | None:
    if not ns:
        return None
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _state(run: Instance) -> dict:
    if run.state == RUNNING:
        return {"running": {"startedAt": rfc3339(run.started_at)}}
    if run.state == EXITED:
        t = {"exitCode": run.exit_code,
             "reason": run.reason or ("Completed" if run.exit_code == 0 else "Error"),
             "startedAt": rfc3339(run.started_at), "finishedAt": rfc3339(run.finished_at),
             "containerID": f"containerd://{run.id}"}
        if run.message:
            t["message"] = run.message
        return {"terminated": t}
    return {"waiting": {"reason": "ContainerCreating"}}


def container_status(c: dict, obs: Observed, init: bool) -> dict:
    runs = obs.runs.get(c["name"]) or []
    cur = runs[0] if runs else None
    out: dict = {"name": c["name"], "image": c.get("image", ""), "imageID": "",
                 "restartCount": cur.attempt if cur else 0, "ready": False,
                 "started": False, "lastState": {}}
    if cur:
        out["imageID"] = cur.image_ref
        out["containerID"] = f"containerd://{cur.id}"
        out["state"] = _state(cur)
        if len(runs) > 1 and runs[1].state == EXITED:
            out["lastState"] = _state(runs[1])
        running = cur.state == RUNNING
        out["started"] = running and obs.started_probe.get(c["name"], True)
        out["ready"] = (running and out["started"] and obs.ready.get(c["name"], True)) if not init \
            else (cur.state == EXITED and cur.exit_code == 0)
    else:
        out["state"] = {"waiting": {"reason": "ContainerCreating"}}
    waiting = obs.waiting.get(c["name"])
    if waiting:
        reason, message = waiting
        if cur and cur.state == EXITED:
            out["lastState"] = _state(cur)
        out["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        out["ready"] = False if not init else out["ready"]
        out["started"] = False
    return out


def phase(pod: dict, obs: Observed) -> str:
    """Upstream getPhase: Pending until init containers are done and a container has run."""
    spec = pod.get("spec") or {}
    policy = spec.get("restartPolicy") or "Always"
    for c in spec.get("initContainers") or ():
        runs = obs.runs.get(c["name"]) or []
        if c.get("restartPolicy") == "Always":  # sidecar
            continue
        if not runs or runs[0].state != EXITED:
            return "Pending"
        if runs[0].exit_code != 0:
            if policy == "Never":
                return "Failed"
            return "Pending"
    running = waiting = stopped = succeeded = 0
    for c in spec.get("containers") or ():
        runs = obs.runs.get(c["name"]) or []
        cur = runs[0] if runs else None
        if cur and cur.state == RUNNING:
            running += 1
        elif cur and cur.state == EXITED:
            stopped += 1
            if cur.exit_code == 0:
                succeeded += 1
            if policy == "Always" or (policy == "OnFailure" and cur.exit_code != 0):
                waiting += 1  # will be restarted
        else:
            # Never started: pending, unless a previous run is there to report
            waiting += 1
    n = len(spec.get("containers") or ())
    if waiting and not running and stopped < n:
        return "Pending"
    if running:
        return "Running"
    if waiting and policy != "Never":
        return "Running" if stopped == n and n else "Pending"
    if stopped == n and n:
        if policy == "Always":
            return "Running"
        if succeeded == n:
            return "Succeeded"
        if policy == "OnFailure":
            return "Running"
        return "Failed"
    return "Pending"


def _cond(type_: str, ok: bool, old: dict[str, dict], now: str, reason: str = "") -> dict:
    status = "True" if ok else "False"
    prev = old.get(type_) or {}
    c = {"type": type_, "status": status, "lastProbeTime": None,
         "lastTransitionTime": prev.get("lastTransitionTime", now)
         if prev.get("status") == status else now}
    if not ok and reason:
        c["reason"] = reason
    return c


def pod_status(pod: dict, obs: Observed, now: str, qos: str) -> dict:
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    prev = {c.get("type"): c for c in old.get("conditions") or ()}
    init = [container_status(c, obs, True) for c in spec.get("initContainers") or ()]
    regular = [container_status(c, obs, False) for c in spec.get("containers") or ()]
    # Regular containers wait for init: upstream reports PodInitializing.
    init_done = all(s["state"].get("terminated", {}).get("exitCode") == 0 for s in init)
    if not init_done:
        for s in regular:
            if "waiting" in s["state"] and s["state"]["waiting"]["reason"] == "ContainerCreating":
                s["state"] = {"waiting": {"reason": "PodInitializing"}}
    ph = phase(pod, obs)
    all_ready = bool(regular) and all(s["ready"] for s in regular)
    terminal = ph in ("Succeeded", "Failed")
    conditions = [
        _cond("PodReadyToStartContainers", obs.sandbox_ready, prev, now),
        _cond("Initialized", init_done, prev, now, "ContainersNotInitialized"),
        _cond("Ready", all_ready and not terminal, prev, now,
              "PodCompleted" if terminal else "ContainersNotReady"),
        _cond("ContainersReady", all_ready and not terminal, prev, now,
              "PodCompleted" if terminal else "ContainersNotReady"),
    ]
    if not init_done and not terminal:
        names = [s["name"] for s in init if s["state"].get("terminated", {}).get("exitCode") != 0]
        conditions[1]["message"] = f"containers with incomplete status: [{' '.join(names)}]"
    if not all_ready and not terminal:
        names = [s["name"] for s in regular if not s["ready"]]
        for c in conditions[2:]:
            c["message"] = f"containers with unready status: [{' '.join(names)}]"
    if terminal:
        conditions[1] = _cond("Initialized", True, prev, now)
    ours = {c["type"] for c in conditions}
    conditions += [c for c in old.get("conditions") or () if c.get("type") not in ours]
    status = {
        "phase": ph, "conditions": conditions, "hostIP": obs.host_ip,
        "hostIPs": [{"ip": obs.host_ip}] if obs.host_ip else [],
        "startTime": old.get("startTime") or now, "qosClass": qos,
        "containerStatuses": regular,
    }
    if init:
        status["initContainerStatuses"] = init
    ip = obs.pod_ip or ((obs.host_ip if spec.get("hostNetwork") else "") if obs.sandbox_ready else "")
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    elif old.get("podIP"):
        status["podIP"], status["podIPs"] = old["podIP"], old.get("podIPs") or [{"ip": old["podIP"]}]
    return status
