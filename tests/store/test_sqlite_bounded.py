"""The SQLite file stays bounded: 1,000,000 updates to 10,000 keys (the node-lease renewal
pattern) with a 1 s history window must leave the file (db + wal) at most 100 MB.

Runs with synchronous=NORMAL: durability against kill -9 is the same (see test_sqlite_crash.py),
only power-loss durability differs, which is not what this test is about; it keeps the run short.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from kybernetes.store.sqlite import SqliteStore

KEYS = 10_000
UPDATES = 1_000_000
WRITERS = 200
LIMIT = 100 * 1000 * 1000


def lease_body(i: int, n: int) -> bytes:
    # about the size of a coordination.k8s.io Lease as the apiserver stores it
    return (
        f'{{"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{{"name":"node-{i}",'
        f'"namespace":"kube-node-lease","uid":"{i:08x}-0000-4000-8000-000000000000",'
        f'"resourceVersion":"{n}","creationTimestamp":"2024-01-01T00:00:00Z"}},"spec":{{'
        f'"holderIdentity":"node-{i}","leaseDurationSeconds":40,'
        f'"renewTime":"2024-01-01T00:00:{n % 60:02d}.{n:06d}Z"}}}}'
    ).encode()


@pytest.mark.slow
async def test_million_updates_keep_the_file_small(tmp_path):
    store = await SqliteStore(
        str(tmp_path / "bounded.db"), history_seconds=1, synchronous="NORMAL"
    ).open()
    largest = 0
    started = time.monotonic()
    try:
        for i in range(0, KEYS, 500):
            await asyncio.gather(*(store.create(f"/leases/n{j}", lease_body(j, 0))
                                   for j in range(i, i + 500)))

        async def renew(w: int) -> None:
            for n in range(w, UPDATES, WRITERS):
                await store.update(f"/leases/n{n % KEYS}", lease_body(n % KEYS, n))

        async def watch_size() -> None:
            nonlocal largest
            while True:
                largest = max(largest, (await store.status())["db_size_bytes"])
                await asyncio.sleep(1)

        sizes = asyncio.create_task(watch_size())
        await asyncio.gather(*(renew(w) for w in range(WRITERS)))
        sizes.cancel()
        status = await store.status()
        largest = max(largest, status["db_size_bytes"])
    finally:
        await store.close()
    elapsed = time.monotonic() - started
    print(f"\n{UPDATES} updates in {elapsed:.1f}s; largest file {largest / 1e6:.1f} MB; "
          f"final {status['db_size_bytes'] / 1e6:.1f} MB; status {status}")
    assert status["keys"] == KEYS
    assert status["revision"] == KEYS + UPDATES
    assert status["compact_revision"] > KEYS  # compaction ran while writing
    assert largest <= LIMIT
