"""The DNS server: UDP and TCP on one address, answers from the cluster zone, forwards the rest.

Names outside the cluster zone go to the configured upstreams; with none configured they are
REFUSED (so a pod's resolver moves on or fails fast instead of waiting), and reverse names of
addresses that are not the cluster's get NXDOMAIN, as CoreDNS' default `kubernetes ... in-addr.arpa
ip6.arpa` block does without `fallthrough`. Until the informers have synced, zone answers are
SERVFAIL rather than a wrong NXDOMAIN.

Zone answers are cached as packed bytes keyed by the query bytes after the id, valid while the
cluster state's generation is unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time

from dnslib import EDNS0, OPCODE, QTYPE, RCODE, DNSHeader, DNSRecord

from .forward import forward
from .metrics import Metrics
from .records import Zone

log = logging.getLogger(__name__)

UDP_DEFAULT = 512          # RFC 1035 without EDNS0
UDP_MAX = 4096             # what we advertise in our OPT record
CACHE_ENTRIES = 20000
TCP_IDLE = 10.0            # seconds an idle TCP connection is kept (CoreDNS' read timeout)


class DnsServer:
    def __init__(self, zone: Zone, *, upstreams: list[tuple[str, int]] | None = None,
                 metrics: Metrics | None = None, cache: bool = True):
        self.zone = zone
        self.upstreams = upstreams or []
        self.metrics = metrics
        self.cache_enabled = cache
        self._cache: dict[tuple[str, bytes], tuple[int, bytes, str, str]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self.address: tuple[str, int] | None = None

    # ---- lifecycle ----

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on UDP and TCP; port 0 picks a port free for both."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for _ in range(20):
            self._tcp = await asyncio.start_server(self._serve_tcp, host, port, family=family,
                                                   reuse_address=True)
            bound = self._tcp.sockets[0].getsockname()[1]
            try:
                self._udp, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self), local_addr=(host, bound), family=family)
                break
            except OSError:
                self._tcp.close()
                await self._tcp.wait_closed()
                if port:
                    raise
        else:
            raise OSError(f"no port free for both UDP and TCP on {host}")
        self.address = (host, bound)
        log.info("dns: serving %s on %s:%d (udp+tcp)", self.zone.domain, host, bound)
        return self.address

    async def stop(self) -> None:
        if self._udp:
            self._udp.close()
        if self._tcp:
            self._tcp.close()
            for w in list(self._conns):
                w.close()
            await self._tcp.wait_closed()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- answering ----

    def answer(self, data: bytes, proto: str) -> bytes | DNSRecord | None:
        """Bytes to send back, a parsed request to forward upstream, or None to drop."""
        start = time.perf_counter()
        key = (proto, bytes(data[2:]))
        hit = self._cache.get(key) if self.cache_enabled else None
        if hit is not None and hit[0] == self.zone.cluster.generation:
            _, packed, qtype, rcode = hit
            if self.metrics:
                self.metrics.cache_hits.labels("dns").inc()
                self._observe(proto, qtype, rcode, "kubernetes", start)
            return bytes(data[:2]) + packed[2:]                   # the cached reply, this query's id
        try:
            request = DNSRecord.parse(data)
        except Exception:
            return self._formerr(data)
        if request.header.qr or not request.questions:
            return None if request.header.qr else self._formerr(data)
        if request.header.opcode != OPCODE.QUERY:
            return self._error(request, RCODE.NOTIMP)
        q = request.q
        qtype = QTYPE.get(q.qtype, str(q.qtype))
        labels = tuple(x.decode(errors="replace").lower() for x in q.qname.label)
        if self.zone.owns(labels):
            if not self.zone.cluster.synced:
                return self._error(request, RCODE.SERVFAIL)
            result = self.zone.resolve(q.qname, q.qtype)
        elif labels[-2:] in (("in-addr", "arpa"), ("ip6", "arpa")):
            result = self.zone.resolve_reverse(q.qname, q.qtype)
            if result is None:
                if self.upstreams:
                    return request
                reply = self._reply(request)
                reply.header.rcode = RCODE.NXDOMAIN
                return self._finish(request, reply, proto, start, cacheable=False)
        else:
            if self.upstreams:
                return request
            return self._error(request, RCODE.REFUSED, proto=proto, start=start)
        reply = self._reply(request)
        reply.header.rcode = result.rcode
        reply.rr, reply.auth, reply.ar = result.answer, result.authority, result.additional
        return self._finish(request, reply, proto, start, cacheable=True, key=key)

    def _reply(self, request: DNSRecord) -> DNSRecord:
        return request.reply(ra=1, aa=1)

    def _finish(self, request: DNSRecord, reply: DNSRecord, proto: str, start: float, *,
                cacheable: bool, key: tuple | None = None) -> bytes:
        edns = next((r for r in request.ar if r.rtype == QTYPE.OPT), None)
        if edns is not None:
            reply.add_ar(EDNS0(udp_len=UDP_MAX))
        packed = bytes(reply.pack())
        limit = max(UDP_DEFAULT, edns.rclass if edns is not None else 0)
        if proto == "udp" and len(packed) > limit:
            # Too big for the client's buffer: header + question with TC set, and the client
            # retries over TCP (RFC 1035 4.2.1, RFC 7766).
            short = DNSRecord(DNSHeader(id=reply.header.id, bitmap=reply.header.bitmap, tc=1),
                              q=request.q)
            if edns is not None:
                short.add_ar(EDNS0(udp_len=UDP_MAX))
            packed = bytes(short.pack())
        qtype = QTYPE.get(request.q.qtype, str(request.q.qtype))
        rcode = RCODE.get(reply.header.rcode, str(reply.header.rcode))
        if cacheable and key is not None and self.cache_enabled:
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
            self._cache[key] = (self.zone.cluster.generation, packed, qtype, rcode)
            if self.metrics:
                self.metrics.cache_misses.labels("dns").inc()
        self._observe(proto, qtype, rcode, "kubernetes", start)
        return packed

    def _error(self, request: DNSRecord, rcode: int, *, proto: str = "udp",
               start: float | None = None) -> bytes:
        reply = request.reply(ra=1, aa=0)
        reply.header.rcode = rcode
        if start is not None:
            self._observe(proto, QTYPE.get(request.q.qtype, "?"), RCODE.get(rcode, "?"), "",
                          start)
        return bytes(reply.pack())

    @staticmethod
    def _formerr(data: bytes, rcode: int = RCODE.FORMERR) -> bytes | None:
        """An answer to a query we could not handle: just the header with its id and rcode."""
        if len(data) < 2:
            return None
        return bytes(DNSRecord(DNSHeader(id=struct.unpack("!H", data[:2])[0], qr=1,
                                         rcode=rcode)).pack())

    def _observe(self, proto: str, qtype: str, rcode: str, plugin: str, start: float) -> None:
        if self.metrics:
            self.metrics.observe(proto=proto, family="1", qtype=qtype, rcode=rcode,
                                 plugin=plugin, zone=self.zone.domain + ".",
                                 seconds=time.perf_counter() - start)

    async def forward(self, data: bytes, request: DNSRecord, proto: str) -> bytes:
        start = time.perf_counter()
        got = await forward(data, self.upstreams, tcp=proto == "tcp")
        qtype = QTYPE.get(request.q.qtype, str(request.q.qtype))
        if got is None:
            reply = request.reply(ra=1, aa=0)
            reply.header.rcode = RCODE.SERVFAIL
            packed, rcode = bytes(reply.pack()), "SERVFAIL"
        else:
            packed, to = got
            rcode = RCODE.get(packed[3] & 0x0F, "?") if len(packed) > 3 else "?"
            if self.metrics:
                self.metrics.forwards.labels(to).inc()
        if self.metrics:
            self.metrics.observe(proto=proto, family="1", qtype=qtype, rcode=rcode,
                                 plugin="forward", zone=".", seconds=time.perf_counter() - start)
        return packed

    # ---- transports ----

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE):
                    size, = struct.unpack("!H", await reader.readexactly(2))
                    data = await reader.readexactly(size)
                try:
                    out = self.answer(data, "tcp")
                except Exception:
                    log.exception("dns: answering a query failed")
                    out = self._formerr(data, RCODE.SERVFAIL)
                if isinstance(out, DNSRecord):
                    out = await self.forward(data, out, "tcp")
                if out is None:
                    continue
                writer.write(struct.pack("!H", len(out)) + out)   # RFC 1035 4.2.2 framing
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            self._conns.discard(writer)
            writer.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer):
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            out = self.server.answer(data, "udp")
        except Exception:
            log.exception("dns: answering a query failed")
            out = self.server._formerr(data, RCODE.SERVFAIL)
        if isinstance(out, DNSRecord):
            self.server.spawn(self._forward(data, out, addr))
        elif out is not None:
            self.transport.sendto(out, addr)

    async def _forward(self, data: bytes, request: DNSRecord, addr) -> None:
        out = await self.server.forward(data, request, "udp")
        if self.transport and not self.transport.is_closing():
            self.transport.sendto(out, addr)
