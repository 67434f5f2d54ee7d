"""The `store` fixture: every behaviour test runs on each backend.

sqlite: a fresh file per test. etcd: one 3-member cluster per session (tests/store/etcd_cluster.py),
each test under its own key prefix; etcd's revision is shared by all prefixes, so tests compare
revisions relative to ones they observed.
"""

from __future__ import annotations

import uuid

import pytest

from kybernetes.store.sqlite import SqliteStore


def _cluster_module():
    try:
        import tests.store.etcd_cluster as module
    except ImportError:  # tests/ is not a package: pytest put this folder on sys.path
        import etcd_cluster as module
    return module


def _etcd_missing() -> str | None:
    try:
        import kybernetes.store.etcd  # noqa: F401

        etcd_available = _cluster_module().etcd_available
    except ImportError as e:
        return f"etcd backend or cluster helper not importable: {e}"
    if not etcd_available():
        return "the etcd binary is not installed"
    return None


@pytest.fixture(scope="session")
def etcd_endpoints(tmp_path_factory):
    reason = _etcd_missing()
    if reason:
        pytest.skip(reason)
    cluster = _cluster_module().EtcdCluster(tmp_path_factory.mktemp("etcd"), members=3)
    endpoints = cluster.start()
    try:
        yield endpoints
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "etcd"])
def backend(request) -> str:
    return request.param


@pytest.fixture
async def store(backend, request, tmp_path):
    if backend == "sqlite":
        s = await SqliteStore(str(tmp_path / "store.db"), history_seconds=3600).open()
    else:
        from kybernetes.store.etcd import EtcdStore

        endpoints = request.getfixturevalue("etcd_endpoints")
        s = await EtcdStore.open(endpoints, prefix=f"/t{uuid.uuid4().hex}")
    try:
        yield s
    finally:
        await s.close()
