"""The kubelet's summary API (/stats/summary): node, pod and container CPU and memory in the
shape of k8s.io/kubelet/pkg/apis/stats/v1alpha1 Summary, which metrics-server reads.

Containers come from CRI ListContainerStats; a pod's figures are the sum of its containers (as
the CRI stats provider does when the runtime gives no sandbox stats). The node's come from the
root memory cgroup (v1) and /proc/stat. usageNanoCores is the rate between two samples, kept
here when the runtime does not compute it.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Callable

from . import machine, podspec
from .cri.client import CRI
from .cri.client import messages as pb

CGROUP_MEMORY = "/sys/fs/cgroup/memory"


def rfc3339(ns: int | float) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def memory_stat(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if v.strip().isdigit():
            out[k] = int(v)
    return out


def working_set(usage: int, stat: dict[str, int]) -> int:
    """cAdvisor's working set: usage minus inactive file pages (never below zero)."""
    inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
    return max(0, usage - inactive)


def cpu_jiffies(proc_stat: str) -> int:
    """Busy time of all CPUs from /proc/stat's first line, in USER_HZ ticks (idle and iowait
    excluded)."""
    fields = proc_stat.splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values[:8]) - idle


class RateTracker:
    """usageNanoCores from successive cumulative usageCoreNanoSeconds samples."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int]] = {}  # key → (timestamp ns, usage ns)

    def rate(self, key: str, timestamp: int, usage: int) -> int:
        prev = self._last.get(key)
        self._last[key] = (timestamp, usage)
        if prev is None or timestamp <= prev[0] or usage < prev[1]:
            return 0
        return int((usage - prev[1]) * 1e9 / (timestamp - prev[0]))

    def keep(self, keys: set[str]) -> None:
        for k in [k for k in self._last if k not in keys]:
            del self._last[k]


class StatsProvider:
    def __init__(self, cri: CRI, node_name: str, pods_of: Callable[[], list[dict]]):
        self.cri, self.node_name, self.pods_of = cri, node_name, pods_of
        self.rates = RateTracker()
        self._boot = time.time() - float(_read("/proc/uptime").split()[0] or 0)

    def node(self) -> dict:
        now = time.time_ns()
        usage = int(_read(f"{CGROUP_MEMORY}/memory.usage_in_bytes").strip() or 0)
        stat = memory_stat(_read(f"{CGROUP_MEMORY}/memory.stat"))
        total = machine.memory_bytes()
        ws = working_set(usage, stat) if usage else total - machine.memory_available()
        ticks = os.sysconf("SC_CLK_TCK")
        core_ns = cpu_jiffies(_read("/proc/stat")) * (1_000_000_000 // ticks)
        return {
            "nodeName": self.node_name,
            "startTime": rfc3339(self._boot * 1e9),
            "cpu": {"time": rfc3339(now), "usageCoreNanoSeconds": core_ns,
                    "usageNanoCores": self.rates.rate("node", now, core_ns)},
            "memory": {"time": rfc3339(now), "availableBytes": max(0, total - ws),
                       "usageBytes": usage or ws, "workingSetBytes": ws,
                       "rssBytes": stat.get("total_rss", 0),
                       "pageFaults": stat.get("total_pgfault", 0),
                       "majorPageFaults": stat.get("total_pgmajfault", 0)},
            "systemContainers": [],
        }

    async def summary(self) -> dict:
        stats = (await self.cri.list_container_stats(filter=pb.ContainerStatsFilter())).stats
        containers = {c.id: c for c in (await self.cri.list_containers()).containers}
        sandboxes = {s.id: s for s in (await self.cri.list_pod_sandbox()).items}
        pods: dict[str, dict] = {}
        keys: set[str] = {"node"}
        for s in stats:
            c = containers.get(s.attributes.id)
            if c is None or c.state != pb.CONTAINER_RUNNING:
                continue
            sb = sandboxes.get(c.pod_sandbox_id)
            labels = c.labels
            uid = labels.get(podspec.POD_UID)
            if not uid:
                continue
            keys.add(c.id)
            entry = self.container_entry(s, c)
            pod = pods.setdefault(uid, {
                "podRef": {"name": labels.get(podspec.POD_NAME, ""),
                           "namespace": labels.get(podspec.POD_NS, ""), "uid": uid},
                "startTime": rfc3339(sb.created_at if sb else c.created_at),
                "containers": [],
                "cpu": {"time": entry["cpu"]["time"], "usageNanoCores": 0, "usageCoreNanoSeconds": 0},
                "memory": {"time": entry["memory"]["time"], "usageBytes": 0, "workingSetBytes": 0,
                           "rssBytes": 0, "pageFaults": 0, "majorPageFaults": 0}})
            pod["containers"].append(entry)
            for part in ("cpu", "memory"):
                for k, v in entry[part].items():
                    if k != "time" and k in pod[part]:
                        pod[part][k] += v
        self.rates.keep(keys)
        return {"node": self.node(), "pods": list(pods.values())}

    def container_entry(self, s, c) -> dict:
        ts_cpu = s.cpu.timestamp or time.time_ns()
        core_ns = s.cpu.usage_core_nano_seconds.value
        nano = s.cpu.usage_nano_cores.value if s.cpu.HasField("usage_nano_cores") else 0
        rate = self.rates.rate(c.id, ts_cpu, core_ns)
        mem = s.memory
        return {
            "name": c.metadata.name,
            "startTime": rfc3339(c.created_at),
            "cpu": {"time": rfc3339(ts_cpu), "usageNanoCores": nano or rate,
                    "usageCoreNanoSeconds": core_ns},
            "memory": {"time": rfc3339(mem.timestamp or ts_cpu),
                       "usageBytes": mem.usage_bytes.value or mem.working_set_bytes.value,
                       "workingSetBytes": mem.working_set_bytes.value,
                       "rssBytes": mem.rss_bytes.value, "pageFaults": mem.page_faults.value,
                       "majorPageFaults": mem.major_page_faults.value},
        }
