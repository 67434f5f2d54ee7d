"""The cluster zone: which records exist for a name, following the "Kubernetes DNS-Based Service
Discovery" specification (github.com/kubernetes/dns docs/specification.md) and the behaviour of
CoreDNS' kubernetes plugin where the spec leaves room (ttl 5, `pods insecure`, dashed-IP endpoint
hostnames, priority-0 SRV with weight 100/n).

A name either does not exist (NXDOMAIN) or exists with a possibly empty set of records; a name
that exists without records of the asked type, including empty non-terminals such as
`svc.<zone>` or `_tcp.<svc>.<ns>.svc.<zone>`, answers NOERROR with no answer (NODATA). Both
negative answers carry the zone's SOA in the authority section.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field

from dnslib import AAAA, CNAME, NS, PTR, QTYPE, RCODE, RR, SOA, SRV, TXT, A, DNSLabel

from .cluster import ClusterState, Endpoint, undashed

SCHEMA_VERSION = "1.1.0"
DNS_SERVICE = ("kube-system", "kube-dns")


@dataclass
class Answer:
    rcode: int = RCODE.NOERROR
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)


def _addr_rr(name, ip: str, ttl: int) -> RR:
    if ipaddress.ip_address(ip).version == 4:
        return RR(name, QTYPE.A, rdata=A(ip), ttl=ttl)
    return RR(name, QTYPE.AAAA, rdata=AAAA(ip), ttl=ttl)


def reverse_ip(labels: tuple[str, ...]) -> str | None:
    """The address a full in-addr.arpa / ip6.arpa name stands for, else None."""
    if labels[-2:] == ("in-addr", "arpa") and len(labels) == 6:
        try:
            return str(ipaddress.IPv4Address(".".join(reversed(labels[:4]))))
        except ValueError:
            return None
    if labels[-2:] == ("ip6", "arpa") and len(labels) == 34:
        nibbles = "".join(reversed(labels[:32]))
        try:
            return str(ipaddress.IPv6Address(int(nibbles, 16)))
        except ValueError:
            return None
    return None


class Zone:
    def __init__(self, cluster: ClusterState, domain: str = "cluster.local", *, ttl: int = 5,
                 pod_mode: str = "insecure"):
        self.cluster = cluster
        self.domain = domain.strip(".").lower()
        self.labels = tuple(self.domain.split("."))
        self.ttl = ttl
        self.pod_mode = pod_mode
        self.serial = int(time.time())

    # ---- public ----

    def owns(self, labels: tuple[str, ...]) -> bool:
        return labels[-len(self.labels):] == self.labels

    def soa(self, owner=None) -> RR:
        return RR(owner or self.domain + ".", QTYPE.SOA, ttl=self.ttl, rdata=SOA(
            f"ns.dns.{self.domain}.", f"hostmaster.{self.domain}.",
            (self.serial, 7200, 1800, 86400, self.ttl)))

    def resolve(self, qname: DNSLabel, qtype: int) -> Answer:
        """The answer for a name inside the cluster zone (`owns` it)."""
        labels = tuple(x.decode(errors="replace").lower() for x in qname.label)
        records = self._records(qname, labels[:len(labels) - len(self.labels)])
        return self._select(qname, qtype, records)

    def resolve_reverse(self, qname: DNSLabel, qtype: int) -> Answer | None:
        """PTR answers for service cluster IPs and ready endpoint IPs; None when the address is
        not the cluster's (the caller forwards or answers NXDOMAIN)."""
        labels = tuple(x.decode(errors="replace").lower() for x in qname.label)
        ip = reverse_ip(labels)
        if ip is None:
            return None
        targets: list[str] = []
        for svc in self.cluster.services_with_ip(ip):
            targets.append(self._svc_name(svc))
        for svc, ep in self.cluster.endpoints_with_ip(ip):
            targets.append(f"{ep.hostname}.{self._svc_name(svc)}")
        if not targets:
            return None
        records = [RR(qname, QTYPE.PTR, rdata=PTR(t), ttl=self.ttl)
                   for t in dict.fromkeys(targets)]
        return self._select(qname, qtype, records)

    # ---- internals ----

    def _select(self, qname: DNSLabel, qtype: int, records: list[RR] | None) -> Answer:
        if records is None:
            return Answer(RCODE.NXDOMAIN, authority=[self.soa()])
        cname = [r for r in records if r.rtype == QTYPE.CNAME]
        if cname and qtype != QTYPE.CNAME:
            return self._follow_cname(cname[0], qtype)
        if qtype == QTYPE.ANY:
            chosen = records
        else:
            chosen = [r for r in records if r.rtype == qtype]
        if not chosen:
            return Answer(authority=[self.soa()])
        return Answer(answer=chosen, additional=self._additional(chosen))

    def _follow_cname(self, cname: RR, qtype: int) -> Answer:
        """An ExternalName CNAME; chased only when it points back into the cluster zone (the
        client's resolver chases outside names itself)."""
        out = Answer(answer=[cname])
        target = DNSLabel(str(cname.rdata.label))
        labels = tuple(x.decode(errors="replace").lower() for x in target.label)
        if self.owns(labels) and labels != self.labels:
            chased = self._records(target, labels[:len(labels) - len(self.labels)])
            if chased and not any(r.rtype == QTYPE.CNAME for r in chased):
                out.answer += [r for r in chased if qtype == QTYPE.ANY or r.rtype == qtype]
        return out

    def _additional(self, answer: list[RR]) -> list[RR]:
        """Address records of in-zone SRV targets (the spec says they may be included)."""
        extra: list[RR] = []
        seen: set[str] = set()
        for r in answer:
            if r.rtype != QTYPE.SRV:
                continue
            target = str(r.rdata.target).lower()
            if target in seen:
                continue
            seen.add(target)
            tl = DNSLabel(target)
            labels = tuple(x.decode().lower() for x in tl.label)
            if self.owns(labels):
                extra += [x for x in self._records(tl, labels[:len(labels) - len(self.labels)]) or []
                          if x.rtype in (QTYPE.A, QTYPE.AAAA)]
        return extra

    def _svc_name(self, svc: dict) -> str:
        m = svc["metadata"]
        return f"{m['name']}.{m['namespace']}.svc.{self.domain}."

    def _records(self, qname: DNSLabel, rel: tuple[str, ...]) -> list[RR] | None:
        """Every record at the name (relative labels inside the zone); None: no such name."""
        ttl = self.ttl
        if not rel:
            return [self.soa(qname), RR(qname, QTYPE.NS, rdata=NS(f"ns.dns.{self.domain}."), ttl=ttl)]
        if rel == ("dns-version",):
            return [RR(qname, QTYPE.TXT, rdata=TXT(SCHEMA_VERSION), ttl=ttl)]
        if rel == ("dns",):
            return []
        if rel == ("ns", "dns"):
            svc = self.cluster.service(*DNS_SERVICE)
            return [_addr_rr(qname, ip, ttl) for ip in _cluster_ips(svc)] if svc else []
        kind = rel[-1]
        if kind == "svc":
            return self._service_records(qname, rel[:-1])
        if kind == "pod":
            return self._pod_records(qname, rel[:-1])
        return None

    def _service_records(self, qname: DNSLabel, rel: tuple[str, ...]) -> list[RR] | None:
        if not rel:
            return []
        ns = rel[-1]
        if len(rel) == 1:
            return [] if self.cluster.namespace_exists(ns) else None
        svc = self.cluster.service(ns, rel[-2])
        if svc is None or len(rel) > 5:
            return None
        spec = svc.get("spec") or {}
        ttl = self.ttl
        if spec.get("type") == "ExternalName":
            if len(rel) > 2:
                return None
            target = (spec.get("externalName") or "").rstrip(".") + "."
            return [RR(qname, QTYPE.CNAME, rdata=CNAME(target), ttl=ttl)]
        headless = spec.get("clusterIP") == "None"
        endpoints = [e for e in self.cluster.endpoints(svc) if e.ready]
        if len(rel) == 2:                                    # <svc>.<ns>.svc
            if headless:
                if not endpoints:
                    return None                              # spec 2.4.1: NXDOMAIN
                out = [_addr_rr(qname, e.ip, ttl) for e in _unique_ips(endpoints)]
            else:
                out = [_addr_rr(qname, ip, ttl) for ip in _cluster_ips(svc)]
            return out + self._srv(qname, svc, headless, endpoints, None, None)
        if len(rel) == 3:                                    # <host>.<svc>.<ns>.svc or _proto
            label = rel[0]
            if label.startswith("_"):
                protos = {(p.get("protocol") or "TCP").lower() for p in spec.get("ports") or []}
                return [] if label[1:] in protos else None
            hits = [e for e in endpoints if e.hostname == label]
            return [_addr_rr(qname, e.ip, ttl) for e in hits] if hits else None
        if len(rel) == 4:                                    # _<port>._<proto>.<svc>.<ns>.svc
            port, proto = rel[0], rel[1]
            if not (port.startswith("_") and proto.startswith("_")):
                return None
            srv = self._srv(qname, svc, headless, endpoints, port[1:], proto[1:])
            return srv or None
        return None

    def _srv(self, qname: DNSLabel, svc: dict, headless: bool, endpoints: list[Endpoint],
             port_name: str | None, proto: str | None) -> list[RR]:
        """SRV records for named ports (all of them when port_name is None)."""
        def wanted(name: str, protocol: str) -> bool:
            if not name:
                return False                                 # unnamed ports have no SRV
            return port_name is None or (name == port_name and protocol == proto)

        targets: list[tuple[int, str]] = []
        if headless:
            for e in endpoints:
                for name, protocol, number in e.ports:
                    if wanted(name, protocol):
                        targets.append((number, f"{e.hostname}.{self._svc_name(svc)}"))
        else:
            for p in (svc.get("spec") or {}).get("ports") or []:
                if wanted((p.get("name") or "").lower(), (p.get("protocol") or "TCP").lower()):
                    targets.append((p["port"], self._svc_name(svc)))
        targets = list(dict.fromkeys(targets))
        weight = max(1, 100 // len(targets)) if targets else 0
        return [RR(qname, QTYPE.SRV, ttl=self.ttl,
                   rdata=SRV(priority=0, weight=weight, port=number, target=target))
                for number, target in targets]

    def _pod_records(self, qname: DNSLabel, rel: tuple[str, ...]) -> list[RR] | None:
        if self.pod_mode == "disabled":
            return None
        if not rel:
            return []
        ns = rel[-1]
        if not self.cluster.namespace_exists(ns):
            return None
        if len(rel) == 1:
            return []
        if len(rel) != 2:
            return None
        ip = undashed(rel[0])
        if ip is None:
            return None
        if self.pod_mode == "verified" and not self.cluster.pod_exists(ns, ip):
            return None
        return [_addr_rr(qname, ip, self.ttl)]


def _cluster_ips(svc: dict) -> list[str]:
    spec = svc.get("spec") or {}
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    out = []
    for ip in ips:
        try:
            out.append(str(ipaddress.ip_address(ip)))
        except ValueError:
            continue
    return out


def _unique_ips(endpoints: list[Endpoint]) -> list[Endpoint]:
    seen: dict[str, Endpoint] = {}
    for e in endpoints:
        seen.setdefault(e.ip, e)
    return list(seen.values())
