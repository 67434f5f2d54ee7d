"""Enter a named network namespace (as `ip netns exec` does) before anything opens a socket."""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNET = 0x40000000


def enter_netns(name: str) -> None:
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {name}: {os.strerror(err)}")
    finally:
        os.close(fd)
