"""`kyb`: one command, one subcommand per component."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path


def run_fast(coro):
    """asyncio.run on uvloop (libuv's loop and TLS in C) when it is installed. Paired runs of
    benchmarks/scheduler.py measured 7% less CPU per pod in the API server and 11% in the
    scheduler with it; the node components stay on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _apiserver(args: argparse.Namespace) -> None:
    from kybernetes.apiserver.server import Config, serve

    store_url = None
    if args.etcd_endpoints:
        store_url = "etcd://" + args.etcd_endpoints.replace("http://", "").replace("https://", "")
    cfg = Config(data_dir=Path(args.data_dir).resolve(), bind_address=args.bind_address,
                 secure_port=args.secure_port, store_url=store_url,
                 advertise=args.advertise_address,
                 merge_kubeconfig=Path(args.merge_kubeconfig).expanduser() if args.merge_kubeconfig else None,
                 extra_sans=tuple(s for s in (args.tls_san or []) if s))
    run_fast(serve(cfg))


def _server(args: argparse.Namespace) -> None:
    from kybernetes.cli.server import main as server_main

    raise SystemExit(server_main(args))


def _controller_manager(args: argparse.Namespace) -> None:
    from kybernetes.controllers.manager import serve

    names = [n for n in (args.controllers or "").split(",") if n and n != "*"] or None
    from kybernetes.controllers import options
    options.configure(args)
    if args.cluster_signing_cert_file or args.cluster_signing_key_file:
        from kybernetes.controllers import csrsigning
        csrsigning.configure(args.cluster_signing_cert_file, args.cluster_signing_key_file)
    asyncio.run(serve(args.kubeconfig, names, leader_elect=args.leader_elect))


def _sim(args: argparse.Namespace) -> None:
    from kybernetes.sim.cli import run

    run(args)


def _scheduler(args: argparse.Namespace) -> None:
    from kybernetes.scheduler.main import serve

    run_fast(serve(args.kubeconfig, args.config, leader_elect=args.leader_elect))


def _agent(args: argparse.Namespace) -> None:
    from kybernetes.kubelet.agent import AgentConfig, SwapError, run

    labels = dict(kv.split("=", 1) for kv in (args.node_labels or "").split(",") if "=" in kv)
    cfg = AgentConfig(
        data_dir=Path(args.data_dir), kubeconfig=args.kubeconfig, server=args.server,
        token=args.token, node_name=args.node_name, node_ip=args.node_ip,
        runtime_endpoint=args.container_runtime_endpoint, kubelet_port=args.kubelet_port,
        pod_cidr=args.pod_cidr, fail_swap_on=args.fail_swap_on,
        ca_dir=Path(args.ca_dir) if args.ca_dir else None, cluster_dns=args.cluster_dns,
        cni_bridge=args.cni_bridge, labels=labels, cluster_cidr=args.cluster_cidr,
        service_cidr=args.service_cidr,
        pod_manifest_path=Path(args.pod_manifest_path) if args.pod_manifest_path else None,
        eviction_hard=args.eviction_hard, eviction_period=args.eviction_monitoring_period,
        eviction_pressure_transition_period=args.eviction_pressure_transition_period)
    try:
        asyncio.run(run(cfg, remove_pods_on_exit=args.remove_pods_on_exit))
    except SwapError as e:
        raise SystemExit(f"kyb agent: {e}")


def _go_duration(text: str) -> float:
    """Seconds in a Go duration ("5m0s", "1h", "300ms"); a bare number is seconds."""
    import re

    try:
        return float(text)
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}")
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * unit[u] for n, u in parts)


def _image(args: argparse.Namespace) -> None:
    from kybernetes.kubelet import imagebuild, registry

    unknown = set(getattr(args, "names", None) or ()) - set(imagebuild.ALL)
    if unknown:
        raise SystemExit(f"kyb image: unknown image {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(imagebuild.ALL)})")
    if args.image_command == "build":
        for name in args.names or imagebuild.ALL:
            print(imagebuild.build(name, Path(args.output)))
    elif args.image_command == "import":
        asyncio.run(_image_import(args))
    elif args.image_command == "push":
        for f in args.files:
            for name in asyncio.run(registry.push(Path(f), args.registry)):
                print(f"{args.registry}/{registry.repository(name)}")
    elif args.image_command == "serve":
        asyncio.run(_image_serve(args))


async def _image_import(args: argparse.Namespace) -> None:
    from kybernetes.kubelet.containerd import Containerd

    c = Containerd(Path(args.data_dir).resolve())
    c.socket = args.address or c.socket
    for f in args.files:
        print((await c.ctr("images", "import", f)).decode(), end="")


async def _image_serve(args: argparse.Namespace) -> None:
    """The local registry with every built image under all its names, until interrupted."""
    import signal

    from kybernetes.kubelet import imagebuild, registry

    data = Path(args.data_dir).resolve()
    reg = registry.Registry(data / "registry", args.port or registry.free_port())
    await reg.start()
    try:
        for name in args.names or imagebuild.ALL:
            archive = await asyncio.to_thread(imagebuild.build_cached, name)
            for n in await reg.push(archive):
                print(f"{n} -> {reg.address}/{registry.repository(n)}", flush=True)
        registry_d = Path(args.registry_d) if args.registry_d else data / "registry.d"
        registry.write_mirror_config(registry_d, reg.address)
        print(f"serving on {reg.address}; containerd hosts in {registry_d}", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        waiter = asyncio.ensure_future(reg.proc.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
        for t in (waiter, stopper):
            t.cancel()
    finally:
        await reg.stop()


def _proxy(args: argparse.Namespace) -> None:
    from kybernetes.proxy import proxier
    from kybernetes.proxy.netns import enter_netns

    if args.netns:
        enter_netns(args.netns)
    if args.cleanup:
        asyncio.run(proxier.cleanup(args.mode))
        return
    if not args.kubeconfig or not args.node_name:
        raise SystemExit("kyb proxy: --kubeconfig and --node-name are required")
    asyncio.run(proxier.serve(args.kubeconfig, args.node_name, args.mode, args.cluster_cidr,
                              args.service_cidr, args.min_sync_period))


def _add_proxy(sub) -> None:
    s = sub.add_parser("proxy", help="run kube-proxy (iptables or nftables mode)")
    s.add_argument("--kubeconfig", default=None)
    s.add_argument("--node-name", default=None)
    s.add_argument("--mode", choices=("iptables", "nftables"), default="iptables")
    s.add_argument("--cluster-cidr", default="10.42.0.0/16")
    s.add_argument("--service-cidr", default="10.43.0.0/16")
    s.add_argument("--min-sync-period", type=float, default=1.0, help="seconds between syncs")
    s.add_argument("--netns", default=None, help="run inside this named network namespace")
    s.add_argument("--cleanup", action="store_true", help="remove the rules of --mode and exit")
    s.set_defaults(func=_proxy)


def _dns(args: argparse.Namespace) -> None:
    from kybernetes.dns.main import DnsConfig, serve

    asyncio.run(serve(DnsConfig(
        kubeconfig=args.kubeconfig, listen=args.listen, cluster_domain=args.cluster_domain,
        upstreams=args.upstream or [], metrics_listen=args.metrics_listen or None, ttl=args.ttl,
        pods=args.pods, cluster_ip=args.cluster_ip or None, cache=args.cache)))


def _add_dns(sub) -> None:
    d = sub.add_parser("dns", help="run the cluster DNS server (CoreDNS' job)")
    d.add_argument("--kubeconfig", default=None)
    d.add_argument("--listen", default="10.43.0.10:53", help="address:port for UDP and TCP")
    d.add_argument("--cluster-domain", default="cluster.local")
    d.add_argument("--upstream", action="append",
                   help="IP[:port] to forward other names to (repeatable); none: REFUSED")
    d.add_argument("--metrics-listen", default="127.0.0.1:9153",
                   help="address:port for /metrics, /health, /ready; empty: off")
    d.add_argument("--ttl", type=int, default=5)
    d.add_argument("--pods", choices=["insecure", "verified", "disabled"], default="insecure")
    d.add_argument("--cluster-ip", default="10.43.0.10",
                   help="clusterIP of the kube-dns Service to create if missing; empty: don't")
    d.add_argument("--cache", default=True, type=lambda v: v.lower() != "false")
    d.set_defaults(func=_dns)


def _overlay(args: argparse.Namespace) -> None:
    from kybernetes.network import overlay

    if args.cleanup:
        asyncio.run(overlay.cleanup_host(cluster_cidr=args.cluster_cidr,
                                         service_cidr=args.service_cidr))
        return
    if not args.kubeconfig or not args.node_name:
        raise SystemExit("kyb overlay: --kubeconfig and --node-name are required")
    asyncio.run(overlay.serve(args.kubeconfig, args.node_name, iface=args.iface,
                              cluster_cidr=args.cluster_cidr, service_cidr=args.service_cidr,
                              masquerade=args.masquerade, cleanup_on_exit=args.cleanup_on_exit))


def _add_overlay(sub) -> None:
    s = sub.add_parser("overlay", help="run the VXLAN pod network overlay agent (flannel's job)")
    s.add_argument("--kubeconfig", default=None)
    s.add_argument("--node-name", default=None)
    s.add_argument("--iface", default=None, help="interface whose address is the VTEP's")
    s.add_argument("--cluster-cidr", default="10.42.0.0/16")
    s.add_argument("--service-cidr", default="10.43.0.0/16")
    s.add_argument("--masquerade", default=True, type=lambda v: v.lower() != "false")
    s.add_argument("--cleanup-on-exit", action="store_true",
                   help="remove the device, routes and rules when stopping")
    s.add_argument("--cleanup", action="store_true", help="remove what the overlay set up, exit")
    s.set_defaults(func=_overlay)


def _lab(args: argparse.Namespace) -> None:
    from kybernetes.lab.cli import run

    raise SystemExit(run(args))


def _add_lab(sub) -> None:
    from kybernetes.lab.cli import add_arguments

    s = sub.add_parser("lab", help="a multi-node cluster of network namespaces on this machine")
    add_arguments(s)
    s.set_defaults(func=_lab)


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
    a.add_argument("--merge-kubeconfig", nargs="?", const="~/.kube/config", default=None,
                   help="also merge the admin kubeconfig into this file (default ~/.kube/config)")
    a.set_defaults(func=_apiserver)

    s = sub.add_parser("server", help="run the whole control plane (and, later, a node agent)")
    s.add_argument("--data-dir", default="/var/lib/kybernetes")
    s.add_argument("--https-listen-port", type=int, default=6443)
    s.add_argument("--bind-address", default="127.0.0.1")
    s.add_argument("--etcd-endpoints", default="")
    s.add_argument("--advertise-address", default=None, help="the address written into kubeconfigs")
    s.add_argument("--tls-san", action="append", help="extra name or IP for the serving certificate")
    s.add_argument("--merge-kubeconfig", nargs="?", const="~/.kube/config", default=None,
                   help="also merge the admin kubeconfig into this file (default ~/.kube/config)")
    s.add_argument("--disable", action="append", help="leave a component out (controller-manager, scheduler)")
    s.add_argument("--disable-agent", action="store_true", help="no node agent on this host")
    s.add_argument("--kube-controller-manager-arg", action="append", metavar="FLAG=VALUE",
                   help="a flag for the controller manager, e.g. node-monitor-grace-period=10s")
    s.set_defaults(func=_server)

    c = sub.add_parser("controller-manager", help="run the controllers")
    c.add_argument("--kubeconfig", required=True)
    c.add_argument("--controllers", default="*", help="comma-separated names; * for all")
    c.add_argument("--leader-elect", default=True, type=lambda v: v.lower() != "false")
    c.add_argument("--cluster-signing-cert-file", default=None,
                   help="CA certificate (PEM) the csrsigning controller issues certificates with")
    c.add_argument("--cluster-signing-key-file", default=None, help="that CA's private key (PEM)")
    from kybernetes.controllers.options import add_arguments as controller_arguments
    controller_arguments(c)
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

    g = sub.add_parser("agent", help="run the node agent (kubelet) on this host")
    g.add_argument("--kubeconfig", default=None)
    g.add_argument("--server", default=None, help="API server URL to join (with --token)")
    g.add_argument("--token", default=None, help="the server's node token (DATA/node-token)")
    g.add_argument("--node-name", default=None)
    g.add_argument("--node-ip", default=None)
    g.add_argument("--node-labels", default="", help="k=v,k2=v2")
    g.add_argument("--data-dir", default="/var/lib/kybernetes/agent")
    g.add_argument("--container-runtime-endpoint", default=None,
                   help="unix:// socket of a running CRI runtime; default: start containerd")
    g.add_argument("--kubelet-port", type=int, default=10250)
    g.add_argument("--pod-cidr", default=None,
                   help="used when node IPAM assigns no spec.podCIDR within 3 s (without it: 60 s, then 10.42.0.0/24)")
    g.add_argument("--fail-swap-on", default=True, type=lambda v: v.lower() != "false")
    g.add_argument("--ca-dir", default=None, help="cluster CA dir (ca.crt, ca.key) for the "
                   "serving certificate; default: tls/ next to the kubeconfig")
    g.add_argument("--cluster-dns", default=None)
    g.add_argument("--cluster-cidr", default="10.42.0.0/16",
                     help="pod traffic leaving it is masqueraded (the overlay uses the same)")
    g.add_argument("--service-cidr", default="10.43.0.0/16")
    g.add_argument("--cni-bridge", default="cni0")
    g.add_argument("--remove-pods-on-exit", action="store_true",
                   help="remove every pod from the runtime when stopping")
    g.add_argument("--pod-manifest-path", default=None,
                   help="folder of static pod manifests (default: DATA/manifests)")
    g.add_argument("--eviction-hard", default=None,
                   help="hard eviction thresholds, e.g. memory.available<100Mi,nodefs.available<10%%"
                   " (default: the kubelet's; empty: none)")
    g.add_argument("--eviction-pressure-transition-period", default=300.0, type=_go_duration,
                   help="how long a pressure condition stays after its threshold clears")
    g.add_argument("--eviction-monitoring-period", default=10.0, type=_go_duration,
                   help="how often the eviction manager looks at the signals")
    g.set_defaults(func=_agent)

    i = sub.add_parser("image", help="build, import and serve container images offline")
    isub = i.add_subparsers(dest="image_command", required=True)
    b = isub.add_parser("build", help="write base images as OCI tarballs (cached; "
                        "python and nginx from Debian packages)")
    b.add_argument("names", nargs="*", help="pause, busybox, python, nginx (default: all)")
    b.add_argument("-o", "--out", "--output", dest="output", default=".")
    m = isub.add_parser("import", help="import OCI/docker tarballs into the agent's containerd")
    m.add_argument("files", nargs="+")
    m.add_argument("--data-dir", default="/var/lib/kybernetes/agent")
    m.add_argument("--address", default=None, help="containerd socket")
    m = isub.add_parser("push", help="push OCI tarballs to a registry under each of their names")
    m.add_argument("files", nargs="+")
    m.add_argument("--registry", required=True, help="HOST:PORT (plain HTTP)")
    m = isub.add_parser("serve", help="run a local registry holding the built images, mirrored "
                        "by containerd for docker.io, registry.k8s.io, quay.io …")
    m.add_argument("names", nargs="*", help="pause, busybox, python, nginx (default: all)")
    m.add_argument("--data-dir", default="/var/lib/kybernetes/agent")
    m.add_argument("--port", type=int, default=None, help="default: 5000, or a free port")
    m.add_argument("--registry-d", default=None,
                   help="containerd's registry config_path (default: DATA_DIR/registry.d)")
    i.set_defaults(func=_image)
    _add_proxy(sub)
    _add_dns(sub)
    _add_overlay(sub)
    _add_lab(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from kybernetes.cli import collector
    collector.install()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        args.func(args)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
