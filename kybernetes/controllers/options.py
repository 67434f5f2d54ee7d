"""The controller manager's settings, as kube-controller-manager's flags of the same names.

`kyb controller-manager` fills OPTIONS from its command line before any controller starts;
controllers read it in setup().
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float:
    """A Go duration ("40s", "1m30s", "500ms") in seconds; a bare number is seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}")
    return total


@dataclass
class ControllerOptions:
    cluster_cidr: str = "10.42.0.0/16"
    node_cidr_mask_size: int = 24
    node_monitor_grace_period: float = 40.0
    node_startup_grace_period: float = 60.0
    terminated_pod_gc_threshold: int = 12500


OPTIONS = ControllerOptions()


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ControllerOptions()
    p.add_argument("--cluster-cidr", default=d.cluster_cidr,
                   help="the pod network; node IPAM hands out a range of it to each node")
    p.add_argument("--node-cidr-mask-size", type=int, default=d.node_cidr_mask_size,
                   help="the prefix length of each node's pod range")
    p.add_argument("--node-monitor-grace-period", type=parse_duration,
                   default=d.node_monitor_grace_period,
                   help="how long a node may go without renewing its lease before it is "
                        "marked Unknown (keep it above the kubelet's 10 s renewal)")
    p.add_argument("--node-startup-grace-period", type=parse_duration,
                   default=d.node_startup_grace_period,
                   help="the same, for a node that has not reported yet")
    p.add_argument("--terminated-pod-gc-threshold", type=int,
                   default=d.terminated_pod_gc_threshold,
                   help="terminated pods kept before the oldest are deleted (0: no limit)")


def configure(args: argparse.Namespace) -> None:
    OPTIONS.cluster_cidr = args.cluster_cidr
    OPTIONS.node_cidr_mask_size = args.node_cidr_mask_size
    OPTIONS.node_monitor_grace_period = args.node_monitor_grace_period
    OPTIONS.node_startup_grace_period = args.node_startup_grace_period
    OPTIONS.terminated_pod_gc_threshold = args.terminated_pod_gc_threshold
