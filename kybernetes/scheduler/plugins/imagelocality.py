"""ImageLocality: prefer nodes that already have the pod's images, weighted by size and by how
widely the image is spread (so one node doesn't attract everything)."""

from __future__ import annotations

from ..framework import MAX_NODE_SCORE, Plugin

MB = 1024 * 1024
MIN_THRESHOLD = 23 * MB
MAX_CONTAINER_THRESHOLD = 1000 * MB


def normalized_image(name: str) -> str:
    """Upstream normalizedImageName: no tag or digest means ':latest'."""
    if "@" in name:
        return name
    if ":" not in name.rsplit("/", 1)[-1]:
        return name + ":latest"
    return name


def calculate_priority(sum_scores: int, containers: int) -> int:
    max_threshold = MAX_CONTAINER_THRESHOLD * containers
    sum_scores = max(MIN_THRESHOLD, min(sum_scores, max_threshold))
    return MAX_NODE_SCORE * (sum_scores - MIN_THRESHOLD) // (max_threshold - MIN_THRESHOLD)


class ImageLocality(Plugin):
    name = "ImageLocality"
    node_state_only = True

    def pre_score(self, state, pi, nodes):
        spec = pi.spec
        containers = list(spec.get("initContainers") or ()) + list(spec.get("containers") or ())
        state[self.name] = ([normalized_image(c.get("image", "")) for c in containers],
                            len(self.handle.cache.node_list) if self.handle else 1)
        return None

    def score(self, state, pi, ni):
        if not ni.images:
            return 0
        images, total = state[self.name]
        counts = self.handle.cache.image_nodes if self.handle else {}
        s = 0
        for img in images:
            size = ni.images.get(img)
            if size is not None:
                s += int(size * (counts.get(img, 1) / max(total, 1)))
        return calculate_priority(s, len(images))
