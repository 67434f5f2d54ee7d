"""Forwarding names outside the cluster to the configured upstream servers (CoreDNS' `forward`).

The client's query bytes go out unchanged, so the upstream's reply already carries the client's
id and question; over UDP a truncated upstream reply is passed on as is, and the client retries
over TCP, which we forward over TCP.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct

log = logging.getLogger(__name__)


def parse_hostport(value: str, default_port: int = 53) -> tuple[str, int]:
    """'10.0.0.1', '10.0.0.1:53', '[fd00::1]:53' or 'fd00::1' → (host, port)."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else default_port
    elif value.count(":") == 1:
        host, _, p = value.partition(":")
        port = int(p)
    else:
        host, port = value, default_port
    ipaddress.ip_address(host)  # upstreams are addresses: resolving a name would need DNS
    return host, port


class _OneReply(asyncio.DatagramProtocol):
    def __init__(self, query_id: bytes):
        self.query_id = query_id
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr) -> None:
        if data[:2] == self.query_id and not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


async def _udp(query: bytes, host: str, port: int, timeout: float) -> bytes:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(lambda: _OneReply(query[:2]),
                                                           remote_addr=(host, port))
    try:
        transport.sendto(query)
        return await asyncio.wait_for(proto.reply, timeout)
    finally:
        transport.close()


async def _tcp(query: bytes, host: str, port: int, timeout: float) -> bytes:
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(struct.pack("!H", len(query)) + query)  # RFC 1035 4.2.2 length prefix
            await writer.drain()
            size, = struct.unpack("!H", await reader.readexactly(2))
            return await reader.readexactly(size)
        finally:
            writer.close()


async def forward(query: bytes, upstreams: list[tuple[str, int]], *, tcp: bool,
                  timeout: float = 2.0) -> tuple[bytes, str] | None:
    """The first upstream reply (and which upstream gave it), trying each in order."""
    for host, port in upstreams:
        try:
            reply = await (_tcp if tcp else _udp)(query, host, port, timeout)
            return reply, f"{host}:{port}"
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            log.debug("upstream %s:%s: %s", host, port, e or type(e).__name__)
    return None
