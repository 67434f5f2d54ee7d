"""Making a container's image present: imagePullPolicy, pulls through the CRI, pull back-off.

Reasons and messages as the kubelet's image manager gives them: ErrImagePull on a failed pull,
then ImagePullBackOff ("Back-off pulling image ...") while the back-off lasts, 10 s doubling to
300 s, per (pod, image).
"""

from __future__ import annotations

import logging
import time

from .cri.client import CRI, CRIError
from .cri.client import messages as pb

log = logging.getLogger("kyb.kubelet.images")
BACKOFF_START, BACKOFF_MAX = 10.0, 300.0


class ImageError(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def pull_policy(container: dict) -> str:
    """The API server defaults it; when absent, upstream's rule (:latest or no tag → Always)."""
    if container.get("imagePullPolicy"):
        return container["imagePullPolicy"]
    image = container.get("image", "")
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    tag = last.rsplit(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


class Backoff:
    """Per-key exponential back-off (client-go flowcontrol.Backoff's shape)."""

    def __init__(self, start: float = BACKOFF_START, cap: float = BACKOFF_MAX,
                 clock=time.monotonic):
        self.start, self.cap, self.clock = start, cap, clock
        self._entries: dict[object, tuple[float, float]] = {}  # key → (delay, last failure)

    def next(self, key) -> float:
        delay, _ = self._entries.get(key, (0.0, 0.0))
        delay = self.start if not delay else min(delay * 2, self.cap)
        self._entries[key] = (delay, self.clock())
        return delay

    def remaining(self, key) -> float:
        """Seconds left in the current back-off (0 when none)."""
        entry = self._entries.get(key)
        if not entry:
            return 0.0
        delay, at = entry
        return max(0.0, at + delay - self.clock())

    def reset(self, key) -> None:
        self._entries.pop(key, None)

    def forget(self, prefix) -> None:
        for k in [k for k in self._entries if isinstance(k, tuple) and k[0] == prefix]:
            del self._entries[k]


class ImageManager:
    def __init__(self, cri: CRI):
        self.cri = cri
        self.backoff = Backoff()

    async def present(self, image: str) -> str | None:
        """The image's id when the runtime has it."""
        st = await self.cri.image_status(image=pb.ImageSpec(image=image))
        return st.image.id if st.HasField("image") and st.image.id else None

    async def ensure(self, pod_uid: str, container: dict,
                     sandbox: pb.PodSandboxConfig | None = None) -> str:
        """Make the image present and return its reference, or raise ImageError."""
        image = container.get("image", "")
        policy = pull_policy(container)
        key = (pod_uid, image)
        local = await self.present(image)
        if policy == "Never":
            if local:
                return local
            raise ImageError("ErrImageNeverPull", f'Container image "{image}" is not present '
                                                  'with pull policy of Never')
        if local and policy == "IfNotPresent":
            return local
        if self.backoff.remaining(key) > 0:
            if local:
                return local
            raise ImageError("ImagePullBackOff", f'Back-off pulling image "{image}"')
        try:
            resp = await self.cri.pull_image(image=pb.ImageSpec(image=image),
                                             sandbox_config=sandbox, timeout=300)
            self.backoff.reset(key)
            return resp.image_ref
        except CRIError as e:
            self.backoff.next(key)
            if local:
                # Offline machines: Always cannot reach a registry, the local copy serves.
                log.info("pulling %s failed (%s); using the local image", image, e.details)
                return local
            raise ImageError("ErrImagePull", f'failed to pull image "{image}": {e.details}') from None
