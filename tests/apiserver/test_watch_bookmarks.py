"""Watch bookmarks (upstream's allowWatchBookmarks): a watch that allows them and has been quiet
for a while gets a BOOKMARK carrying the current resourceVersion, so its client may resume from
there; a watch that did not ask never gets one. The API server runs in-process here so the quiet
period can be shortened."""

from __future__ import annotations

import asyncio

from kybernetes.apiserver import rest
from kybernetes.apiserver.server import ApiServer, Config
from kybernetes.client import Client, resource

CONFIGMAPS = resource("v1", "ConfigMap")


async def test_a_quiet_watch_gets_a_bookmark_at_the_current_revision_only_if_it_asked(
        tmp_path, monkeypatch):
    monkeypatch.setattr(rest, "BOOKMARK_AFTER", 0.5)
    server = ApiServer(Config(data_dir=tmp_path, secure_port=0))
    await server.start()
    client = Client.from_kubeconfig(tmp_path / "kubeconfig.yaml")
    try:
        await client.create(resource("v1", "Namespace"), {"metadata": {"name": "bm"}})
        _, rv = await client.list_all(CONFIGMAPS, "bm")
        seen: dict[bool, list[dict]] = {True: [], False: []}

        async def watch(bookmarks: bool) -> None:
            async for ev in client.watch(CONFIGMAPS, "bm", resource_version=rv,
                                         bookmarks=bookmarks, timeout_seconds=30):
                seen[bookmarks].append(ev)
                if ev["type"] == "BOOKMARK":
                    return

        with_bm = asyncio.create_task(watch(True))
        without = asyncio.create_task(watch(False))
        made = [await client.create(CONFIGMAPS, {"metadata": {"name": f"cm-{i}"}}, "bm")
                for i in range(5)]
        last_rv = made[-1]["metadata"]["resourceVersion"]
        await asyncio.wait_for(with_bm, 30)
        *events, bookmark = seen[True]
        assert [e["object"]["metadata"]["name"] for e in events] == [f"cm-{i}" for i in range(5)]
        assert bookmark["object"]["kind"] == "ConfigMap"
        assert bookmark["object"]["apiVersion"] == "v1"
        assert int(bookmark["object"]["metadata"]["resourceVersion"]) >= int(last_rv)
        # The one that did not ask: its events, and by now several quiet periods without one.
        await asyncio.sleep(1.5)
        assert [e["type"] for e in seen[False]] == ["ADDED"] * 5
        without.cancel()
        await asyncio.gather(without, return_exceptions=True)
    finally:
        await client.close()
        await server.stop()
