"""The lifecycle of a pod on a simulated node, as pure functions of (pod, now).

`plan(pod, ...)` returns the status the kubelet would write next, whether to confirm a deletion,
and when to look again. Containers "run" until told to exit: the pod annotation
`sim.kybernetes.io/exit-after: "2s"` (+ optional `sim.kybernetes.io/exit-code: "1"`) applies to
every container; a container whose command or args contain `sim-exit=N` exits with N. What
follows an exit is the restart policy's business, as in the kubelet: Never → terminated,
OnFailure → restarts on non-zero, Always → restarts, with CrashLoopBackOff delays between.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import re
from dataclasses import dataclass

from .objects import now_time, parse_time

EXIT_AFTER = "sim.kybernetes.io/exit-after"
EXIT_CODE = "sim.kybernetes.io/exit-code"
_EXIT_TOKEN = re.compile(r"sim-exit=(-?\d+)")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
_BACKOFF_START, _BACKOFF_MAX = 10.0, 300.0  # kubelet's container restart back-off


@dataclass
class Timing:
    start_delay: float = 0.2
    ready_delay: float = 0.5
    stop_delay: float = 0.2  # simulated stop before confirming a deletion
    honor_grace: bool = False


@dataclass
class Plan:
    status: dict | None = None  # the full new status; None when nothing changed
    delete: bool = False        # confirm deletion with DELETE gracePeriodSeconds=0
    wake: float | None = None   # look again after this many seconds


def parse_duration(text: str) -> float:
    """Go-style durations: "2s", "500ms", "1m30s", or a bare number of seconds."""
    text = text.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(a + u for a, u in parts) != text:
        raise ValueError(f"invalid duration {text!r}")
    return sum(float(a) * _UNITS[u] for a, u in parts)


def exit_codes(pod: dict) -> tuple[dict[str, int], float]:
    """Which containers exit (name → code) and after how long they have run."""
    ann = pod["metadata"].get("annotations") or {}
    after = 0.0
    pod_code: int | None = None
    if EXIT_AFTER in ann:
        try:
            after = parse_duration(ann[EXIT_AFTER])
            pod_code = int(ann.get(EXIT_CODE, "0"))
        except ValueError:
            pod_code = None
    codes = {}
    for c in pod["spec"].get("containers") or []:
        m = _EXIT_TOKEN.search(" ".join(str(a) for a in (c.get("command") or []) + (c.get("args") or [])))
        if m:
            codes[c["name"]] = int(m.group(1))
        elif pod_code is not None:
            codes[c["name"]] = pod_code
    return codes, after


def normalize_image(image: str) -> str:
    """What containerd reports for an image reference: registry, library/ and tag filled in."""
    name, digest = image, ""
    if "@" in name:
        name, digest = name.split("@", 1)
    first = name.split("/", 1)[0]
    if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
        name = ("docker.io/library/" if "/" not in name else "docker.io/") + name
    if digest:
        return f"{name}@{digest}"
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name


def _image_id(image: str) -> str:
    ref = normalize_image(image)
    repo = ref.split("@")[0].rsplit(":", 1)[0] if "@" not in ref else ref.split("@")[0]
    return f"{repo}@sha256:{hashlib.sha256(ref.encode()).hexdigest()}"


def _container_id(pod: dict, name: str, restarts: int) -> str:
    uid = pod["metadata"].get("uid", pod["metadata"]["name"])
    return "sim://" + hashlib.sha256(f"{uid}/{name}/{restarts}".encode()).hexdigest()


def _base_status(pod: dict, spec_c: dict, restarts: int = 0) -> dict:
    return {"name": spec_c["name"], "image": normalize_image(spec_c.get("image") or ""),
            "imageID": _image_id(spec_c.get("image") or ""),
            "containerID": _container_id(pod, spec_c["name"], restarts), "restartCount": restarts}


def _running(pod: dict, c: dict, at: str, restarts: int = 0, last: dict | None = None) -> dict:
    return dict(_base_status(pod, c, restarts), state={"running": {"startedAt": at}},
                lastState=last or {}, ready=False, started=True)


def _terminated(code: int, started: str, finished: str, container_id: str) -> dict:
    return {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
            "startedAt": started, "finishedAt": finished, "containerID": container_id}


def _set_condition(conds: list[dict], ctype: str, status: str, now: str,
                   reason: str | None = None, message: str | None = None) -> None:
    for c in conds:
        if c["type"] == ctype:
            if c["status"] != status:
                c["lastTransitionTime"] = now
            c["status"] = status
            c.pop("reason", None)
            c.pop("message", None)
            break
    else:
        c = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": now}
        conds.append(c)
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message


_COND_ORDER = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")


def _conditions(pod: dict, status: dict, now: str) -> list[dict]:
    conds = copy.deepcopy(status.get("conditions") or [])
    terminal = status.get("phase") in ("Succeeded", "Failed")
    _set_condition(conds, "PodReadyToStartContainers", "False" if terminal else "True", now)
    _set_condition(conds, "Initialized", "True", now)
    unready = [c["name"] for c in status.get("containerStatuses") or [] if not c.get("ready")]
    if unready:
        reason = "PodCompleted" if terminal else "ContainersNotReady"
        msg = None if terminal else f"containers with unready status: [{' '.join(unready)}]"
        _set_condition(conds, "ContainersReady", "False", now, reason, msg)
    else:
        _set_condition(conds, "ContainersReady", "True", now)
    # Ready also waits for the pod's readiness gates, which others set.
    have = {c["type"]: c["status"] for c in conds}
    gates = [g["conditionType"] for g in pod["spec"].get("readinessGates") or []
             if have.get(g["conditionType"]) != "True"]
    if unready:
        _set_condition(conds, "Ready", "False", now, reason, msg)
    elif gates:
        _set_condition(conds, "Ready", "False", now, "ReadinessGatesNotReady",
                       f"corresponding condition of pod readiness gate \"{gates[0]}\" does not exist.")
    else:
        _set_condition(conds, "Ready", "True", now)
    _set_condition(conds, "PodScheduled", "True", now)
    rank = {t: i for i, t in enumerate(_COND_ORDER)}
    return sorted(conds, key=lambda c: rank.get(c["type"], len(rank)))


def _backoff(restarts: int) -> float:
    """Delay before restart number `restarts` (the first restart is immediate)."""
    if restarts <= 1:
        return 0.0
    return min(_BACKOFF_START * 2 ** (restarts - 2), _BACKOFF_MAX)


def started_status(pod: dict, *, now: float, host_ip: str, pod_ip: str) -> dict:
    at = now_time(now)
    status = copy.deepcopy(pod.get("status") or {})
    spec = pod["spec"]
    status.update(phase="Running", hostIP=host_ip, hostIPs=[{"ip": host_ip}], podIP=pod_ip,
                  podIPs=[{"ip": pod_ip}], startTime=at)
    inits = []
    for c in spec.get("initContainers") or []:
        if c.get("restartPolicy") == "Always":  # a sidecar keeps running
            inits.append(dict(_running(pod, c, at), ready=True))
        else:
            cs = _base_status(pod, c)
            inits.append(dict(cs, state={"terminated": _terminated(0, at, at, cs["containerID"])},
                              lastState={}, ready=True, started=False))
    if inits:
        status["initContainerStatuses"] = inits
    status["containerStatuses"] = [_running(pod, c, at) for c in spec.get("containers") or []]
    status["conditions"] = _conditions(pod, status, at)
    return status


def _step_containers(pod: dict, status: dict, now: float, started: float | None,
                     timing: Timing) -> list[float]:
    """Advance container states to `now` in place; returns when the next change is due."""
    at = now_time(now)
    codes, after = exit_codes(pod)
    policy = pod["spec"].get("restartPolicy", "Always")
    specs = {c["name"]: c for c in pod["spec"].get("containers") or []}
    wakes = []
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "waiting" in state:  # back-off before a restart
            last = ((cs.get("lastState") or {}).get("terminated") or {})
            due = (parse_time(last.get("finishedAt")) or now) + _backoff(cs["restartCount"])
            if now < due:
                wakes.append(due - now)
                continue
            cs.update(_running(pod, specs[cs["name"]], at, cs["restartCount"], cs.get("lastState")))
            state = cs["state"]
        if "running" not in state:
            continue
        begun = parse_time(state["running"]["startedAt"]) or now
        if cs["restartCount"] == 0 and started is not None:
            begun = started  # the precise time, where we know it (metav1.Time drops fractions)
        code = codes.get(cs["name"])
        if code is not None and now >= begun + after:
            term = _terminated(code, state["running"]["startedAt"], at, cs["containerID"])
            restart = policy == "Always" or (policy == "OnFailure" and code != 0)
            if restart:
                n = cs["restartCount"] + 1
                cs.update(lastState={"terminated": term}, restartCount=n, ready=False, started=False,
                          containerID=_container_id(pod, cs["name"], n))
                if _backoff(n) > 0:
                    cs["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message":
                                   f"back-off {int(_backoff(n))}s restarting failed container="
                                   f"{cs['name']} pod={pod['metadata']['name']}_"
                                   f"{pod['metadata'].get('namespace', '')}({pod['metadata'].get('uid', '')})"}}
                    wakes.append(_backoff(n))
                else:
                    cs["state"] = {"running": {"startedAt": at}}
                    cs["started"] = True
                    wakes.extend([after, timing.ready_delay])
            else:
                cs.update(state={"terminated": term}, ready=False, started=False)
            continue
        if code is not None:
            wakes.append(begun + after - now)
        if not cs.get("ready"):
            if now >= begun + timing.ready_delay:
                cs["ready"] = True
            else:
                wakes.append(begun + timing.ready_delay - now)
    return wakes


def _phase(pod: dict, status: dict) -> str:
    states = [cs.get("state") or {} for cs in status.get("containerStatuses") or []]
    if not states or not all("terminated" in s for s in states):
        return "Running"
    ok = all(s["terminated"].get("exitCode") == 0 for s in states)
    return "Succeeded" if ok else "Failed"


def stopped_status(pod: dict, now: float) -> dict:
    """Every container stopped on deletion (exit 0 after SIGTERM); the pod ends terminal, as
    kubelets since 1.27 report before the final delete."""
    at = now_time(now)
    status = copy.deepcopy(pod.get("status") or {})
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "terminated" in state:
            continue
        begun = (state.get("running") or {}).get("startedAt") or at
        cs.update(state={"terminated": _terminated(0, begun, at, cs.get("containerID", ""))},
                  ready=False, started=False)
    status["phase"] = _phase(pod, status) if status.get("containerStatuses") else "Failed"
    status["conditions"] = _conditions(pod, status, at)
    return status


def plan(pod: dict, *, now: float, seen: float, started: float | None, host_ip: str,
         pod_ip: str | None, timing: Timing) -> Plan:
    """What to do for `pod` at `now`. `seen`: when this kubelet first saw it (its containers
    start `timing.start_delay` later); `started`: when they started (None if unknown);
    `pod_ip`: the address to give a new pod."""
    meta, status = pod["metadata"], pod.get("status") or {}
    phase = status.get("phase")
    terminal = phase in ("Succeeded", "Failed")
    if meta.get("deletionTimestamp"):
        if terminal or not status.get("startTime"):
            return Plan(delete=True)
        grace = meta.get("deletionGracePeriodSeconds") or 0
        requested = (parse_time(meta["deletionTimestamp"]) or now) - grace
        wait = grace if timing.honor_grace else min(grace, timing.stop_delay)
        if now < requested + wait:
            return Plan(wake=requested + wait - now)
        return Plan(status=stopped_status(pod, now), delete=True)
    if terminal:
        return Plan()
    if not status.get("startTime"):
        due = seen + timing.start_delay
        if now < due:
            return Plan(wake=due - now)
        # Containers started when due; if this write comes late (a busy API server), it
        # reports what happened since, e.g. already Ready: the kubelet's status manager
        # likewise writes only the latest status, not every transition.
        ip = host_ip if pod["spec"].get("hostNetwork") else pod_ip
        new = started_status(pod, now=due, host_ip=host_ip, pod_ip=ip or host_ip)
        wakes = _step_containers(pod, new, now, due, timing)
        new["phase"] = _phase(pod, new)
        new["conditions"] = _conditions(pod, new, now_time(now))
        return Plan(status=new, wake=min(wakes) if wakes else None)
    new = copy.deepcopy(status)
    wakes = _step_containers(pod, new, now, started, timing)
    new["phase"] = _phase(pod, new)
    new["conditions"] = _conditions(pod, new, now_time(now))
    return Plan(status=None if new == status else new, wake=min(wakes) if wakes else None)


class PodIPs:
    """Pod addresses of one node: its podCIDR (when assigned) or a fake per-node /24."""

    def __init__(self, cidr: str):
        self.net = ipaddress.ip_network(cidr, strict=False)
        self.used: set[str] = set()
        self._next = 2  # .0 is the network, .1 the bridge gateway

    def take(self, ip: str) -> None:
        self.used.add(ip)

    def release(self, ip: str | None) -> None:
        if ip:
            self.used.discard(ip)

    def allocate(self) -> str | None:
        size = self.net.num_addresses
        for _ in range(max(size - 3, 1)):
            i = self._next
            self._next = self._next + 1 if self._next + 1 < size - 1 else 2
            ip = str(self.net[i])
            if ip not in self.used:
                self.used.add(ip)
                return ip
        return None
