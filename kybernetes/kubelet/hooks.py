"""Container lifecycle hooks (postStart, preStop) as the kubelet runs them
(pkg/kubelet/lifecycle/handlers.go): the same exec/httpGet/sleep handlers as probes.

postStart runs right after StartContainer; if it fails the container is killed and the event
FailedPostStartHook recorded. preStop runs before StopContainer and counts against the
termination grace period; whatever is left of it goes to the stop.
"""

from __future__ import annotations

import asyncio
import time

from .cri.client import CRI
from .probes import Result, run_action


async def run_hook(cri: CRI, handler: dict, container: dict, container_id: str, pod_ip: str,
                   timeout: float) -> Result:
    """Run one hook handler; a hook that outlives `timeout` counts as failed."""
    try:
        return await asyncio.wait_for(
            run_action(cri, handler, container, container_id, pod_ip, timeout), timeout)
    except asyncio.TimeoutError:
        return Result(False, f"hook did not complete within {int(timeout)}s")


def failure_message(kind: str, handler: dict, result: Result) -> str:
    """The event message upstream records for a failed hook."""
    if "exec" in handler:
        cmd = handler["exec"].get("command") or []
        return f"{kind} hook: Exec lifecycle hook ({cmd}) for Container failed - error: " \
               f"command '{' '.join(cmd)}' exited with non-zero code, message: {result.message!r}"
    if "httpGet" in handler:
        return f"{kind} hook: HTTP lifecycle hook ({handler['httpGet'].get('path', '/')}) " \
               f"for Container failed - error: {result.message}"
    return f"{kind} hook failed: {result.message}"


async def pre_stop(cri: CRI, container: dict, container_id: str, pod_ip: str,
                   grace: float) -> tuple[Result | None, float]:
    """Run the container's preStop hook, if any, within `grace` seconds; returns its result
    and the grace period left for stopping the container (at least 2 s, as upstream)."""
    handler = (container.get("lifecycle") or {}).get("preStop")
    if not handler:
        return None, grace
    t0 = time.monotonic()
    result = await run_hook(cri, handler, container, container_id, pod_ip, max(grace, 1))
    return result, max(2.0, grace - (time.monotonic() - t0))
