"""`kyb lab up|add|down|exec|cut|heal|status`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .hosts import LabError
from .lab import NAME, SUBNET, Lab


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="lab_command", required=True)
    up = sub.add_parser("up", help="build the hosts and start the cluster")
    up.add_argument("--nodes", type=int, default=2)
    up.add_argument("--no-agent", action="store_true",
                    help="no node agents (Node objects are registered for the hosts instead)")
    up.add_argument("--proxy-mode", choices=("iptables", "nftables"), default="iptables")
    up.add_argument("--node-monitor-grace", type=float, default=None, metavar="SECONDS",
                    help="how long a silent node stays Ready (controller-manager's "
                         "--node-monitor-grace-period; default 40; keep it above 10)")
    up.add_argument("--name", default=NAME, help="host name prefix (a second lab needs its own)")
    up.add_argument("--subnet", default=SUBNET, help="the lab bridge's /24")
    for name, text in (("add", "one more host, joined to the running cluster"),
                       ("down", "stop everything and remove the hosts"),
                       ("status", "the lab's processes")):
        sub.add_parser(name, help=text)
    ex = sub.add_parser("exec", help="run a command in a host's network namespace")
    ex.add_argument("host")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    for name, text in (("cut", "take a host's link to the lab bridge down (node failure)"),
                       ("heal", "bring a cut host's link back")):
        s = sub.add_parser(name, help=text)
        s.add_argument("host")
    for s in sub.choices.values():
        s.add_argument("--data-dir", required=True)


def run(args: argparse.Namespace) -> int:
    lab = Lab(Path(args.data_dir))
    try:
        match args.lab_command:
            case "up":
                lab.up(args.nodes, agent=not args.no_agent, proxy_mode=args.proxy_mode,
                       subnet=args.subnet, name=args.name,
                       node_monitor_grace=args.node_monitor_grace)
                print(f"lab up: {', '.join(f'{h.name} ({h.ip})' for h in lab.hosts)}")
                print(f"  export KUBECONFIG={lab.kubeconfig}; kubectl get nodes")
            case "add":
                h = lab.add()
                print(f"lab add: {h.name} ({h.ip})")
            case "down":
                lab.down()
            case "status":
                print(json.dumps(lab.status(), indent=2))
            case "cut":
                lab.cut(args.host)
            case "heal":
                lab.heal(args.host)
            case "exec":
                cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
                if not cmd:
                    raise LabError("give a command: kyb lab exec --data-dir D HOST -- CMD")
                argv = lab.exec_argv(args.host, cmd)
                sys.stdout.flush()
                os.execvp(argv[0], argv)
    except LabError as e:
        print(f"kyb lab: {e}", file=sys.stderr)
        return 1
    return 0
