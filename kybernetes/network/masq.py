"""MASQUERADE for pod traffic leaving the pod network (flannel's rules, in a chain of ours).

Pod → pod (anywhere in the cluster CIDR) and pod → service keep the pod's source address; pod →
anything else leaves with the node's address. The chain is rewritten whole with
`iptables-restore --noflush` (atomic) and joined from nat POSTROUTING by one tagged jump rule.
"""

from __future__ import annotations

import asyncio

CHAIN = "KYB-POSTROUTING"
_COMMENT = "kybernetes overlay: pod traffic leaving the pod network"
_JUMP = ["-m", "comment", "--comment", _COMMENT, "-j", CHAIN]


def chain_rules(cluster_cidr: str, service_cidr: str) -> list[str]:
    """The body of KYB-POSTROUTING as iptables-restore lines."""
    return [
        f"-A {CHAIN} -s {cluster_cidr} -d {cluster_cidr} -j RETURN",
        f"-A {CHAIN} -s {cluster_cidr} -d {service_cidr} -j RETURN",
        f"-A {CHAIN} -s {cluster_cidr} -d 224.0.0.0/4 -j RETURN",
        f"-A {CHAIN} -s {cluster_cidr} -j MASQUERADE --random-fully",
    ]


def restore_input(cluster_cidr: str, service_cidr: str) -> str:
    # Declaring the chain in --noflush mode flushes just that chain: the body is replaced whole.
    lines = ["*nat", f":{CHAIN} - [0:0]", *chain_rules(cluster_cidr, service_cidr), "COMMIT", ""]
    return "\n".join(lines)


async def _run(argv: list[str], stdin: str | None = None, check: bool = True) -> int:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {err.decode().strip()}")
    return proc.returncode or 0


async def ensure(cluster_cidr: str, service_cidr: str, iptables: str = "iptables") -> None:
    await _run([f"{iptables}-restore", "--noflush"], restore_input(cluster_cidr, service_cidr))
    if await _run([iptables, "-w", "-t", "nat", "-C", "POSTROUTING", *_JUMP], check=False):
        await _run([iptables, "-w", "-t", "nat", "-A", "POSTROUTING", *_JUMP])


async def remove(iptables: str = "iptables") -> None:
    while not await _run([iptables, "-w", "-t", "nat", "-D", "POSTROUTING", *_JUMP], check=False):
        pass
    await _run([iptables, "-w", "-t", "nat", "-F", CHAIN], check=False)
    await _run([iptables, "-w", "-t", "nat", "-X", CHAIN], check=False)
