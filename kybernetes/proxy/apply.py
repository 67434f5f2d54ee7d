"""The thin part: hand rendered rules to the kernel (iptables-restore / nft -f)."""

from __future__ import annotations

import asyncio
import logging

from . import iptables, nftables
from .model import NodeInfo, ServicePort

log = logging.getLogger("kyb.proxy")


class CommandError(RuntimeError):
    pass


async def run(argv: list[str], stdin: str | None = None, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    if check and proc.returncode != 0:
        raise CommandError(f"{' '.join(argv)}: exit {proc.returncode}: {err.decode().strip()[:2000]}")
    return out.decode()


class IptablesBackend:
    mode = "iptables"

    def __init__(self) -> None:
        self.current: dict[str, list[str] | None] | None = None

    async def setup(self) -> None:
        # Start from what a previous run left: those chains get rewritten or deleted.
        self.current = iptables.owned_chains(await run(["iptables-save", "-t", "nat"]))
        await run(["iptables-restore", "--noflush"],
                  "*nat\n" + "".join(f":{c} - [0:0]\n" for c in iptables.BASE_CHAINS
                                     if c not in self.current) + "COMMIT\n")
        for builtin, target in iptables.JUMPS.items():
            if await _fails(_jump("-C", builtin, target)):
                await run(_jump("-I", builtin, target))

    async def sync(self, ports: list[ServicePort], node: NodeInfo) -> bool:
        if self.current is None:   # after an error or for the periodic full sync: rewrite all
            self.current = iptables.owned_chains(await run(["iptables-save", "-t", "nat"]))
        new = iptables.render(ports, node)
        text = iptables.restore_script(self.current, new)
        if text is None:
            return False
        await run(["iptables-restore", "--noflush"], text)
        self.current = dict(new)
        return True

    async def cleanup(self) -> None:
        """Remove everything this proxy installs (`kyb proxy --cleanup`, tests)."""
        for builtin, target in iptables.JUMPS.items():
            while not await _fails(_jump("-D", builtin, target)):
                pass
        owned = iptables.owned_chains(await run(["iptables-save", "-t", "nat"]))
        if owned:
            await run(["iptables-restore", "--noflush"],
                      "*nat\n" + "".join(f":{c} - [0:0]\n" for c in owned)
                      + "".join(f"-X {c}\n" for c in owned) + "COMMIT\n")


class NftablesBackend:
    mode = "nftables"

    def __init__(self) -> None:
        self.current: nftables.Ruleset | None = None

    async def setup(self) -> None:
        self.current = None   # the first sync recreates the table atomically

    async def sync(self, ports: list[ServicePort], node: NodeInfo) -> bool:
        new = nftables.render(ports, node)
        text = nftables.script(self.current, new)
        if text is None:
            return False
        try:
            await run(["nft", "-f", "-"], text)
        except CommandError:
            self.current = None   # state unknown: rewrite the table next time
            raise
        self.current = new
        return True

    async def cleanup(self) -> None:
        await run(["nft", "delete", "table", *nftables.TABLE.split()], check=False)


def _jump(verb: str, builtin: str, target: str) -> list[str]:
    return ["iptables", "-t", "nat", verb, builtin, "-m", "comment", "--comment",
            "kubernetes service portals", "-j", target]


async def _fails(argv: list[str]) -> bool:
    try:
        await run(argv)
        return False
    except CommandError:
        return True


def backend(mode: str):
    if mode == "iptables":
        return IptablesBackend()
    if mode == "nftables":
        return NftablesBackend()
    raise ValueError(f"unknown proxy mode {mode!r} (iptables or nftables; IPVS is not available)")
