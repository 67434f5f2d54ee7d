"""`kyb`: one command, one subcommand per component."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path


def _apiserver(args: argparse.Namespace) -> None:
    from kybernetes.apiserver.server import Config, serve

    store_url = None
    if args.etcd_endpoints:
        store_url = "etcd://" + args.etcd_endpoints.replace("http://", "").replace("https://", "")
    cfg = Config(data_dir=Path(args.data_dir).resolve(), bind_address=args.bind_address,
                 secure_port=args.secure_port, store_url=store_url,
                 advertise=args.advertise_address,
                 extra_sans=tuple(s for s in (args.tls_san or []) if s))
    asyncio.run(serve(cfg))


def _server(args: argparse.Namespace) -> None:
    from kybernetes.cli.server import main as server_main

    raise SystemExit(server_main(args))


def _controller_manager(args: argparse.Namespace) -> None:
    from kybernetes.controllers.manager import serve

    names = [n for n in (args.controllers or "").split(",") if n and n != "*"] or None
    asyncio.run(serve(args.kubeconfig, names, leader_elect=args.leader_elect))


def _sim(args: argparse.Namespace) -> None:
    from kybernetes.sim.cli import run

    run(args)


def _scheduler(args: argparse.Namespace) -> None:
    from kybernetes.scheduler.main import serve

    asyncio.run(serve(args.kubeconfig, args.config, leader_elect=args.leader_elect))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kyb", description="kybernetes: Kubernetes, written in Python")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("apiserver", help="run the API server alone")
    a.add_argument("--data-dir", default="/var/lib/kybernetes")
    a.add_argument("--bind-address", default="127.0.0.1")
    a.add_argument("--secure-port", type=int, default=6443)
    a.add_argument("--etcd-endpoints", default="",
                   help="comma-separated host:port list; default: embedded SQLite in the data dir")
    a.add_argument("--advertise-address", default=None)
    a.add_argument("--tls-san", action="append", help="extra name or IP for the serving certificate")
    a.set_defaults(func=_apiserver)

    s = sub.add_parser("server", help="run the whole control plane (and, later, a node agent)")
    s.add_argument("--data-dir", default="/var/lib/kybernetes")
    s.add_argument("--https-listen-port", type=int, default=6443)
    s.add_argument("--bind-address", default="127.0.0.1")
    s.add_argument("--etcd-endpoints", default="")
    s.add_argument("--disable", action="append", help="leave a component out (controller-manager, scheduler)")
    s.add_argument("--disable-agent", action="store_true", help="no node agent on this host")
    s.set_defaults(func=_server)

    c = sub.add_parser("controller-manager", help="run the controllers")
    c.add_argument("--kubeconfig", required=True)
    c.add_argument("--controllers", default="*", help="comma-separated names; * for all")
    c.add_argument("--leader-elect", default=True, type=lambda v: v.lower() != "false")
    c.set_defaults(func=_controller_manager)

    from kybernetes.sim.cli import add_arguments as sim_arguments
    s = sub.add_parser("sim", help="simulated nodes (kwok-style) for scale tests")
    sim_arguments(s)
    s.set_defaults(func=_sim)
    s = sub.add_parser("scheduler", help="run the scheduler")
    s.add_argument("--kubeconfig", default=None)
    s.add_argument("--config", default=None, help="KubeSchedulerConfiguration YAML")
    s.add_argument("--leader-elect", default=True, type=lambda v: v.lower() != "false")
    s.set_defaults(func=_scheduler)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        args.func(args)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
