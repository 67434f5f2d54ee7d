"""`kyb sim nodes`: the command line of the simulator (its arguments and its process loop)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

log = logging.getLogger("kyb.sim")


def add_arguments(sim: argparse.ArgumentParser) -> None:
    kinds = sim.add_subparsers(dest="sim_kind", required=True)
    n = kinds.add_parser("nodes", help="register simulated nodes and play the pods bound to them")
    n.add_argument("--kubeconfig", required=True)
    n.add_argument("--count", type=int, default=1)
    n.add_argument("--name-prefix", default="sim-")
    n.add_argument("--cpu", default="8")
    n.add_argument("--memory", default="32Gi")
    n.add_argument("--pods", default="110")
    n.add_argument("--labels", default="", help="k=v,... added to every node")
    n.add_argument("--taints", default="", help="k=v:NoSchedule,... registered with every node")
    n.add_argument("--zones", default="", help="a,b,c: topology.kubernetes.io/zone round-robin")
    n.add_argument("--start-delay", type=float, default=0.2, help="seconds from bound to Running")
    n.add_argument("--ready-delay", type=float, default=0.5, help="seconds from Running to Ready")
    n.add_argument("--stop-delay", type=float, default=0.2,
                   help="simulated container stop on deletion (capped by the grace period)")
    n.add_argument("--honor-grace", action="store_true",
                   help="wait the pod's full grace period before confirming a deletion")
    n.add_argument("--lease-period", type=float, default=10.0, help="Lease renewal interval")
    n.add_argument("--status-period", type=float, default=300.0,
                   help="node status heartbeat interval; 300 s is the kubelet's "
                        "nodeStatusReportFrequency (the Lease is the liveness signal)")
    n.add_argument("--concurrency", type=int, default=64, help="parallel node writes")
    n.add_argument("--pod-workers", type=int, default=32, help="parallel pod writes")


def run(args: argparse.Namespace) -> None:
    asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> None:
    from kybernetes.client import Client

    from .nodes import SimNodes
    from .objects import NodeTemplate, parse_labels, parse_taints
    from .podstatus import Timing

    template = NodeTemplate(cpu=args.cpu, memory=args.memory, pods=args.pods,
                            labels=parse_labels(args.labels), taints=parse_taints(args.taints),
                            zones=[z for z in args.zones.split(",") if z])
    timing = Timing(start_delay=args.start_delay, ready_delay=args.ready_delay,
                    stop_delay=args.stop_delay, honor_grace=args.honor_grace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Client.from_kubeconfig(args.kubeconfig, user_agent="kyb-sim/v1.33.0") as client:
        sim = SimNodes(client, count=args.count, name_prefix=args.name_prefix, template=template,
                       timing=timing, lease_period=args.lease_period,
                       status_period=args.status_period, concurrency=args.concurrency,
                       pod_workers=args.pod_workers)
        starting = asyncio.create_task(sim.start())
        await asyncio.wait([starting, asyncio.create_task(stop.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # registration errors end the process with the error
            await stop.wait()
        else:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        await sim.stop()
        log.info("stopped; %d nodes stay registered", args.count)
