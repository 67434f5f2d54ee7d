"""The controller manager: every controller in one process, behind one leader election."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import socket

from kybernetes.client import Client, EventRecorder, InformerFactory, LeaderElector

log = logging.getLogger("kyb.controller-manager")

# name → "module:Class"; each module is one controller.
CONTROLLERS: dict[str, str] = {}


def register(name: str, target: str) -> None:
    CONTROLLERS[name] = target


def _load(target: str):
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


async def run_controllers(client: Client, names: list[str] | None = None) -> None:
    """Start the named controllers (all by default) and run until cancelled."""
    factory = InformerFactory(client)
    recorder = EventRecorder(client, "kube-controller-manager")
    wanted = names or list(CONTROLLERS)
    controllers = []
    for n in wanted:
        if n not in CONTROLLERS:
            raise SystemExit(f"unknown controller {n!r}; known: {', '.join(sorted(CONTROLLERS))}")
        controllers.append(_load(CONTROLLERS[n])(client, factory, recorder))
    factory.start()
    try:
        await asyncio.gather(*(c.run() for c in controllers))
    finally:
        await factory.stop()
        await recorder.flush()


async def serve(kubeconfig: str, names: list[str] | None = None, *, leader_elect: bool = True) -> None:
    client = Client.from_kubeconfig(kubeconfig, user_agent="kube-controller-manager")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    identity = f"{socket.gethostname()}_{os.getpid()}"
    elector = LeaderElector(client, "kube-controller-manager", identity) if leader_elect else None
    work = (lambda: run_controllers(client, names))
    task = asyncio.create_task(elector.run(work) if elector else work())
    await asyncio.wait([task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if elector:
        await elector.release()
    await client.close()


_BUILTIN = {
    "replicaset": "kybernetes.controllers.replicaset:ReplicaSetController",
    "replicationcontroller": "kybernetes.controllers.replicationcontroller:ReplicationControllerController",
    "deployment": "kybernetes.controllers.deployment:DeploymentController",
    "garbagecollector": "kybernetes.controllers.garbagecollector:GarbageCollector",
    "namespace": "kybernetes.controllers.namespace:NamespaceController",
    "endpoints": "kybernetes.controllers.endpoints:EndpointsController",
    "endpointslice": "kybernetes.controllers.endpointslice:EndpointSliceController",
    "serviceaccount": "kybernetes.controllers.serviceaccount:ServiceAccountController",
    "root-ca-cert-publisher": "kybernetes.controllers.rootca:RootCAPublisher",
    "nodeipam": "kybernetes.controllers.nodeipam:NodeIpamController",
    "nodelifecycle": "kybernetes.controllers.nodelifecycle:NodeLifecycleController",
    "podgc": "kybernetes.controllers.podgc:PodGCController",
    "job": "kybernetes.controllers.job:JobController",
    "cronjob": "kybernetes.controllers.cronjob:CronJobController",
    "servicelb": "kybernetes.proxy.servicelb:ServiceLBController",
    "statefulset": "kybernetes.controllers.statefulset:StatefulSetController",
    "daemonset": "kybernetes.controllers.daemonset:DaemonSetController",
    "persistentvolume-binder": "kybernetes.controllers.persistentvolume:PersistentVolumeBinderController",
    "local-path-provisioner": "kybernetes.controllers.localpath:LocalPathProvisioner",
    "csrapproving": "kybernetes.controllers.csrapproving:CSRApprovingController",
    "csrsigning": "kybernetes.controllers.csrsigning:CSRSigningController",
}
for _name, _target in _BUILTIN.items():
    register(_name, _target)
