"""The work queue's contract, as client-go's: de-duplication, one worker per key, backoff."""

import asyncio

from kybernetes.client.workqueue import TokenBucket, WorkQueue


async def test_duplicate_adds_collapse():
    q = WorkQueue()
    for _ in range(5):
        q.add("a")
    q.add("b")
    assert len(q) == 2
    assert await q.get() == "a"
    assert await q.get() == "b"


async def test_key_in_processing_is_not_handed_out_twice():
    q = WorkQueue()
    q.add("a")
    key = await q.get()
    q.add("a")  # changed while being processed
    assert len(q) == 0  # waits until done
    q.done(key)
    assert len(q) == 1 and await q.get() == "a"


async def test_rate_limited_backoff_doubles_and_forget_resets():
    q = WorkQueue(base_delay=0.01, qps=1000, burst=1000)
    delays = []
    for _ in range(4):
        before = asyncio.get_running_loop().time()
        q.add_rate_limited("a")
        assert await q.get() == "a"
        delays.append(asyncio.get_running_loop().time() - before)
        q.done("a")
    assert q.num_requeues("a") == 4
    assert delays[3] > delays[0] * 3  # 0.01, 0.02, 0.04, 0.08
    q.forget("a")
    assert q.num_requeues("a") == 0


async def test_add_after_keeps_earliest():
    q = WorkQueue()
    q.add_after("a", 5)
    q.add_after("a", 0.02)
    got = await asyncio.wait_for(q.get(), 1)
    assert got == "a"


async def test_shutdown_releases_getters():
    q = WorkQueue()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.shutdown()
    assert await asyncio.wait_for(getter, 1) is None


def test_token_bucket_delays_past_burst():
    b = TokenBucket(rate=10, burst=2)
    assert b.reserve() == 0 and b.reserve() == 0
    assert 0.05 < b.reserve() <= 0.1
