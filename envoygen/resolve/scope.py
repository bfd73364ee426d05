"""Scope: which resources affect the gateway workloads being built.

Strictness applies where a setting changes a built gateway.  A Gateway is in scope
when it selects a workload being built; a VirtualService when it binds to such a
Gateway; a ServiceEntry, Kubernetes Service or DestinationRule when its host is (or,
for a wildcard, covers) a destination host of an in-scope VirtualService.  Other
kinds (Secrets, IstioOperators, policies) are always in scope.

An error reported inside a resource out of scope (an egress Gateway's ISTIO_MUTUAL
server, a DestinationRule for a host no route reaches) becomes a warning that names
the resource and why it does not apply; inside a used resource it stays an error.
Schema errors (the resource was not even read), duplicates (EG0105) and a
VirtualService none of whose gateways exists (EG0201) are never demoted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..diagnostics import Finding, Findings
from ..model import Res, Resources
from ..model.hosts import HostSet, fqdn, gateway_ref
from ..model.networking import VirtualService
from ..workloads import Workload

NEVER_DEMOTED = {"EG0105", "EG0201"}


def destination_hosts(vs: Res[VirtualService]) -> set[str]:
    """Every destination host (route, mirror, mirrors; http, tcp, tls) of a VirtualService, as FQDN."""
    spec = vs.obj.spec
    out: set[str] = set()
    for http in spec.http:
        dests = [d.destination for d in http.route] + [m.destination for m in http.mirrors]
        if http.mirror is not None:
            dests.append(http.mirror)
        out.update(fqdn(d.host, vs.namespace) for d in dests)
    for route in [*spec.tcp, *spec.tls]:
        out.update(fqdn(d.destination.host, vs.namespace) for d in route.route)
    return out


@dataclass
class Scope:
    out: dict[int, str] = field(default_factory=dict)  # id(resource) → why it affects no built gateway
    spans: list[tuple[str, int, int, str]] = field(default_factory=list)  # (file, first line, last line, label)

    def in_scope(self, res: Res[Any]) -> bool:
        return id(res) not in self.out

    def demote(self, findings: Findings) -> None:
        """Turn every demotable error inside an out-of-scope resource into a warning saying why."""
        findings.rewrite(self._demoted)

    def _demoted(self, f: Finding) -> Finding:
        span = self._span_of(f) if f.severity == "error" and f.code not in NEVER_DEMOTED else None
        if span is None:
            return f
        return Finding(f.file, f.line, f.code, f"{f.message}; not fatal: {span}", f.path, "warning", f.hint)

    def _span_of(self, f: Finding) -> str | None:
        for file, first, last, why in self.spans:
            if f.file == file and first <= f.line <= last:
                return why
        return None


def _last_line(res: Res[Any]) -> int:
    return max([res.doc.line, *res.doc.positions.values()])


def scope_for(resources: Resources, built: list[Workload]) -> Scope:
    scope = Scope()
    gateways = {g.key for g in resources.gateways if any(w.selects(g.obj.spec.selector) for w in built)}
    names = ", ".join(f"{w.namespace}/{w.name}" for w in built)
    for g in resources.gateways:
        if g.key not in gateways:
            scope.out[id(g)] = f"Gateway {g.key} selects none of the gateway workloads being built ({names})"
    hosts: set[str] = set()
    for vs in resources.virtual_services:
        refs = {gateway_ref(x, vs.namespace) for x in vs.obj.spec.gateways}
        if refs & gateways:
            hosts |= destination_hosts(vs)
        else:
            scope.out[id(vs)] = f"VirtualService {vs.key} binds to no Gateway of the workloads being built"
    reached = HostSet(hosts)  # linear: each host is looked up, not compared with every destination
    for se in resources.service_entries:
        if not any(reached.matches_any(fqdn(h, se.namespace)) for h in se.obj.spec.hosts):
            scope.out[id(se)] = f"ServiceEntry {se.key}: no route of a built gateway reaches its hosts"
    for svc in resources.services:
        if fqdn(svc.name, svc.namespace) not in hosts:
            scope.out[id(svc)] = f"Service {svc.key}: no route of a built gateway reaches it"
    for dr in resources.destination_rules:
        host = fqdn(dr.obj.spec.host, dr.namespace)
        if not reached.matches_any(host):
            scope.out[id(dr)] = f"DestinationRule {dr.key}: no route of a built gateway reaches host {host}"
    for res in resources.all():
        why = scope.out.get(id(res))
        if why is not None:
            scope.spans.append((res.file, res.doc.line, _last_line(res), why))
    return scope
