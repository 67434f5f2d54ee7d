"""What the node is made of, read from the machine: CPUs, memory, disk, addresses, OS."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
         "s390x": "s390x"}


def swap_on(swaps: str | None = None) -> bool:
    """True when /proc/swaps lists any swap device (the first line is a header)."""
    if swaps is None:
        try:
            swaps = Path("/proc/swaps").read_text()
        except OSError:
            return False
    return any(line.strip() for line in swaps.splitlines()[1:])


def cpu_count() -> int:
    """CPUs this process may use: the affinity mask, narrowed by a cgroup v1 CFS quota."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            n = min(n, max(1, -(-quota // period)))
    except (OSError, ValueError):
        pass
    return n


def memory_bytes(meminfo: str | None = None) -> int:
    text = meminfo if meminfo is not None else Path("/proc/meminfo").read_text()
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def memory_available(meminfo: str | None = None) -> int:
    text = meminfo if meminfo is not None else Path("/proc/meminfo").read_text()
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def disk_bytes(path: str | Path) -> tuple[int, int]:
    """(capacity, available) of the filesystem holding path."""
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


def default_ip() -> str:
    """The host's address on the interface of its default route (no packet is sent)."""
    try:
        with open("/proc/net/route") as f:
            iface = next((line.split()[0] for line in f.readlines()[1:]
                          if line.split()[1] == "00000000"), None)
    except OSError:
        iface = None
    if iface:
        import fcntl
        import struct
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                packed = fcntl.ioctl(s.fileno(), 0x8915,  # SIOCGIFADDR
                                     struct.pack("256s", iface.encode()[:15]))
                return socket.inet_ntoa(packed[20:24])
            except OSError:
                pass
    return "127.0.0.1"


def os_image() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def architecture() -> str:
    m = platform.machine()
    return _ARCH.get(m, m)


def kernel_version() -> str:
    return platform.release()


def machine_id() -> str:
    for p in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            return Path(p).read_text().strip()
        except OSError:
            continue
    return ""
