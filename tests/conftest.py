"""Shared fixtures: a real `kyb apiserver` process, components and real kubectl binaries.

The helpers live in kybtest.py (a module name no other test directory shares); tests import
them from there, never from `conftest`, which is ambiguous when several conftest.py exist."""

from __future__ import annotations

import subprocess

import pytest

from kybernetes.client import Client
from kybtest import (KUBECTL_VERSIONS, Kubectl, Server, controller_manager_args, kubectl_binary,
                     kubectl_or_skip, start_apiserver, start_component, stop_process)


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory) -> Server:
    """One API server for a test session (tests use their own namespaces)."""
    server = start_apiserver(tmp_path_factory.mktemp("apiserver"))
    yield server
    server.stop()


@pytest.fixture(params=KUBECTL_VERSIONS)
def kubectl(request, apiserver, tmp_path) -> Kubectl:
    binary = kubectl_binary(request.param)
    if binary is None:
        pytest.skip(f"kubectl {request.param} is not installed")
    return Kubectl(binary, apiserver.kubeconfig, tmp_path / "kubectl-cache")


@pytest.fixture
def kubectl133(apiserver, tmp_path) -> Kubectl:
    """kubectl 1.33 against the session's API server (skips where it is not installed)."""
    return kubectl_or_skip(apiserver.kubeconfig, tmp_path / "kubectl-cache")


@pytest.fixture
def api_client(apiserver):
    """The official Python client's ApiClient for the session's server."""
    from kubernetes import config
    c = config.new_client_from_config(config_file=str(apiserver.kubeconfig))
    yield c
    c.close()


@pytest.fixture
async def client(apiserver):
    """An API client for the session's server."""
    c = Client.from_kubeconfig(apiserver.kubeconfig)
    yield c
    await c.close()


@pytest.fixture
def components(tmp_path):
    """Start more components for one test: components("controller-manager", "--controllers", "x").
    The kubeconfig of the given server is appended by the caller. All are stopped afterwards."""
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        p = start_component(list(args), tmp_path / f"{args[0]}-{len(procs)}.log")
        procs.append(p)
        return p

    yield start
    for p in reversed(procs):
        stop_process(p)


@pytest.fixture
def controller_manager(components):
    """Start a controller-manager for one test: controller_manager(kubeconfig, "endpoints", *more
    flags), running only those controllers, without leader election; stopped afterwards."""
    def start(kubeconfig, controllers: str, *extra: str) -> subprocess.Popen:
        return components(*controller_manager_args(kubeconfig, controllers), *extra)
    return start
