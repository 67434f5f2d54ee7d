"""Child process for test_sqlite_crash.py: writes forever with several concurrent writers and
prints "key revision value" for every acknowledged write, flushed, until it is killed."""

from __future__ import annotations

import asyncio
import sys

from kybernetes.store.sqlite import SqliteStore


async def main(path: str, tag: str) -> None:
    store = await SqliteStore(path, history_seconds=3600).open()

    async def writer(i: int) -> None:
        n = 0
        while True:
            n += 1
            key = f"/crash/{i}/{n % 7}"
            value = f"{tag}-{i}-{n}"
            kv = await store.update(key, value.encode())
            sys.stdout.write(f"{key} {kv.mod_revision} {value}\n")
            sys.stdout.flush()

    await asyncio.gather(*(writer(i) for i in range(8)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
