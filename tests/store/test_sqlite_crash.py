"""kill -9 of a process writing to SqliteStore loses no acknowledged write."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kybernetes.store.sqlite import SqliteStore

WRITER = Path(__file__).with_name("crash_writer.py")
ROOT = Path(__file__).resolve().parents[2]


def run_and_kill(path: Path, tag: str) -> list[tuple[str, int, str]]:
    """Start the writer, SIGKILL it at a random moment, return every write it acknowledged."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(path), tag],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        first = proc.stdout.readline()  # the store is open and writing
        assert first, "the writer exited before acknowledging anything"
        time.sleep(random.uniform(0.05, 0.8))
    finally:
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()  # acknowledged lines still in the pipe count too
        proc.wait()
    lines = (first + rest).decode().splitlines()
    acks = []
    for line in lines:
        if line.count(" ") == 2:  # a line cut by the kill was never acknowledged in full
            key, rev, value = line.split(" ")
            acks.append((key, int(rev), value))
    return acks


async def verify(path: Path, acks: list[tuple[str, int, str]]) -> int:
    store = await SqliteStore(str(path), history_seconds=3600).open()
    try:
        for key, rev, value in acks:
            kv = await store.get(key, revision=rev)
            assert kv is not None and kv.mod_revision == rev and kv.value == value.encode()
        latest: dict[str, int] = {}
        for key, rev, _ in acks:
            latest[key] = max(latest.get(key, 0), rev)
        for key, rev in latest.items():
            # later writes may have committed without being acknowledged
            assert (await store.get(key)).mod_revision >= rev
        return await store.current_revision()
    finally:
        await store.close()


@pytest.mark.slow
def test_acknowledged_writes_survive_kill_9(tmp_path):
    path = tmp_path / "crash.db"
    last_revision = 0
    for round_ in range(4):
        acks = run_and_kill(path, f"r{round_}")
        revisions = [rev for _, rev, _ in acks]
        assert len(set(revisions)) == len(revisions), "two writes acknowledged at one revision"
        assert min(revisions) > last_revision, "revisions went backwards after a restart"
        for writer in {key.split("/")[2] for key, _, _ in acks}:
            mine = [rev for key, rev, _ in acks if key.split("/")[2] == writer]
            assert mine == sorted(mine), "one writer's writes acknowledged out of order"
        last_revision = asyncio.run(verify(path, acks))
        assert last_revision >= max(revisions)
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()
