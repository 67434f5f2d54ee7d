"""A restarted API server loses nothing, and watches resume from where they were."""

from __future__ import annotations

import threading

from kubernetes import client, config, watch

from kybtest import start_apiserver


def test_restart_keeps_objects_and_watch_resumes(tmp_path):
    server = start_apiserver(tmp_path / "data")
    try:
        api = config.new_client_from_config(config_file=str(server.kubeconfig))
        core = client.CoreV1Api(api)
        for i in range(20):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"keep{i}"},
                                                          "data": {"i": str(i)}})
        rv = core.list_namespaced_config_map("default").metadata.resource_version
        api.close()
    finally:
        server.stop()

    server = start_apiserver(tmp_path / "data", port=server.port)
    try:
        api = config.new_client_from_config(config_file=str(server.kubeconfig))
        core = client.CoreV1Api(api)
        names = {c.metadata.name: c.data["i"] for c in core.list_namespaced_config_map("default").items}
        assert all(names[f"keep{i}"] == str(i) for i in range(20))
        # Resume a watch from the resourceVersion read before the restart: the changes made
        # since then arrive, none from before.
        core.patch_namespaced_config_map("keep3", "default", {"data": {"i": "changed"}})
        core.delete_namespaced_config_map("keep4", "default")
        seen = []
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_config_map, "default", resource_version=rv,
                           timeout_seconds=5):
            seen.append((ev["type"], ev["object"].metadata.name))
            if len(seen) == 2:
                w.stop()
        assert seen == [("MODIFIED", "keep3"), ("DELETED", "keep4")]
        api.close()
    finally:
        server.stop()


def test_merge_kubeconfig_keeps_other_contexts(tmp_path):
    """`--merge-kubeconfig FILE` adds the admin context to an existing kubeconfig."""
    import yaml

    target = tmp_path / "home" / "config"
    target.parent.mkdir()
    target.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "other",
        "clusters": [{"name": "other", "cluster": {"server": "https://192.0.2.9:6443"}}],
        "users": [{"name": "someone", "user": {"token": "x"}}],
        "contexts": [{"name": "other", "context": {"cluster": "other", "user": "someone"}}]}))
    server = start_apiserver(tmp_path / "data", extra=["--merge-kubeconfig", str(target)])
    try:
        doc = yaml.safe_load(target.read_text())
        assert {c["name"] for c in doc["contexts"]} == {"other", "kybernetes"}
        assert doc["current-context"] == "kybernetes"
        api = config.new_client_from_config(config_file=str(target))
        assert client.CoreV1Api(api).read_namespace("default").metadata.name == "default"
        api.close()
    finally:
        server.stop()
