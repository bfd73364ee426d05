"""The service registry a gateway sees: ServiceEntries and Kubernetes Services.

Endpoints come, in this order, from a ServiceEntry (STATIC endpoints with
labels, or DNS) and from a Kubernetes Service in the input (the Service's DNS
name on its targetPort).  DestinationRules are looked up per host as Istio
does (most specific host; proxy namespace, then service namespace, then root).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from ..diagnostics import Findings
from ..model import Res, Resources
from ..model.hosts import fqdn, is_ip, visible_to
from ..model.networking import DestinationRule, Subset, TrafficPolicy

ROOT_NAMESPACE = "istio-system"


@dataclass(frozen=True)
class SvcPort:
    number: int
    name: str
    protocol: str
    target: int  # default endpoint port


@dataclass(frozen=True)
class SvcEndpoint:
    address: str
    ports: dict[str, int]
    labels: dict[str, str]
    weight: int | None = None
    locality: str | None = None  # region/zone/subzone


@dataclass
class ServiceInfo:
    host: str
    namespace: str
    ports: list[SvcPort]
    resolution: str  # STATIC, DNS, DNS_ROUND_ROBIN, NONE
    endpoints: list[SvcEndpoint]
    origin: str
    file: str
    line: int
    dropped: tuple[int, ...] = ()  # ports refused with an error already reported (e.g. named targetPort)
    selector: dict[str, str] = field(default_factory=dict)  # a Kubernetes Service's pod selector
    mesh_external: bool = False  # a ServiceEntry with location MESH_EXTERNAL (no AUTO_PASSTHROUGH chain)

    def port(self, number: int) -> SvcPort | None:
        return next((p for p in self.ports if p.number == number), None)


@dataclass
class MergedRule:
    """DestinationRules for one host, merged as Istio does (first policy wins)."""

    host: str
    rules: list[Res[DestinationRule]]
    traffic_policy: TrafficPolicy | None
    subsets: list[Subset] = field(default_factory=list)

    def subset(self, name: str) -> Subset | None:
        return next((s for s in self.subsets if s.name == name), None)


def _protocol_of_k8s_port(name: str | None, app_protocol: str | None) -> str:
    ap = (app_protocol or "").lower()
    if ap in ("http2", "grpc", "kubernetes.io/h2c", "grpc-web"):
        return "HTTP2" if ap != "grpc" else "GRPC"
    if ap in ("http", "kubernetes.io/ws"):
        return "HTTP"
    n = (name or "").lower()
    prefix = n.split("-", 1)[0]
    return {"http": "HTTP", "http2": "HTTP2", "grpc": "GRPC", "https": "HTTPS", "tls": "TLS", "tcp": "TCP"}.get(prefix, "TCP")


def selected_entries(resources: Resources, namespace: str, selector: dict[str, str]) -> list[SvcEndpoint]:
    """WorkloadEntries of ``namespace`` whose labels include ``selector`` (a Service's selector, a
    ServiceEntry's workloadSelector), as endpoints; an empty selector selects none."""
    if not selector:
        return []
    out = []
    for we in resources.workload_entries:
        e = we.obj.spec
        if we.namespace != namespace or e.address is None:
            continue
        if all(e.labels.get(k) == v for k, v in selector.items()):
            out.append(SvcEndpoint(e.address, dict(e.ports), dict(e.labels), e.weight, e.locality))
    return out


def build_registry(resources: Resources, findings: Findings, viewer_ns: str) -> dict[str, ServiceInfo]:
    """Services visible to a gateway workload in ``viewer_ns`` (ServiceEntry exportTo honoured)."""
    reg: dict[str, ServiceInfo] = {}
    for se in resources.service_entries:
        if not visible_to(se.obj.spec.export_to, se.namespace, viewer_ns):
            continue
        spec = se.obj.spec
        ports = [SvcPort(p.number, p.name, p.protocol.upper(), p.target_port or p.number) for p in spec.ports]
        eps = []
        for i, e in enumerate(spec.endpoints):
            if e.address is None:
                findings.error(se.file, se.line("spec", "endpoints", i), "EG0103",
                               f"ServiceEntry {se.key}: endpoint needs an address", f"spec.endpoints[{i}].address")
                continue
            if spec.resolution == "STATIC" and not is_ip(e.address):
                findings.error(se.file, se.line("spec", "endpoints", i, "address"), "EG0106",
                               f"ServiceEntry {se.key}: resolution STATIC needs IP addresses, found {e.address!r}",
                               f"spec.endpoints[{i}].address", "use resolution: DNS for host names")
                continue
            eps.append(SvcEndpoint(e.address, dict(e.ports), dict(e.labels), e.weight, e.locality))
        if spec.workload_selector is not None:
            eps += selected_entries(resources, se.namespace, spec.workload_selector.labels)
        for h in spec.hosts:
            host = fqdn(h, se.namespace)
            if host in reg:
                findings.warning(se.file, se.line("spec", "hosts"), "EG0209",
                                 f"ServiceEntry {se.key}: host {host} is already defined by {reg[host].origin}; the first wins",
                                 "spec.hosts")
                continue
            reg[host] = ServiceInfo(host, se.namespace, ports, spec.resolution, eps, f"ServiceEntry {se.key}",
                                    se.file, se.line("spec", "hosts"), mesh_external=spec.location == "MESH_EXTERNAL")
    for svc in resources.services:
        host = fqdn(svc.name, svc.namespace)
        if host in reg:
            continue  # a ServiceEntry for the same host comes first
        ports = []
        dropped = []
        for i, p in enumerate(svc.obj.spec.ports):
            if isinstance(p.target_port, str):
                dropped.append(p.port)
                findings.error(svc.file, svc.line("spec", "ports", i, "targetPort"), "EG0104",
                               f"Service {svc.key}: named targetPort {p.target_port!r} cannot be resolved without pods",
                               f"spec.ports[{i}].targetPort", "use the container port number")
                continue
            ports.append(SvcPort(p.port, p.name or "", _protocol_of_k8s_port(p.name, p.app_protocol), p.target_port or p.port))
        selector = svc.obj.spec.selector
        selected = selected_entries(resources, svc.namespace, selector) if selector else []
        if selected:  # pods of the Service, as WorkloadEntries (or --workload-address): labels for subsets
            resolution = "STATIC" if all(is_ip(e.address) for e in selected) else "DNS"
            reg[host] = ServiceInfo(host, svc.namespace, ports, resolution, selected, f"Service {svc.key}",
                                    svc.file, svc.line("metadata", "name"), tuple(dropped), dict(selector))
            continue
        reg[host] = ServiceInfo(host, svc.namespace, ports, "DNS", [SvcEndpoint(host, {}, {})],
                                f"Service {svc.key}", svc.file, svc.line("metadata", "name"), tuple(dropped), dict(selector))
    return reg


class RuleSet(dict):
    """Merged DestinationRules by host, with Istio's most-specific-host lookup in
    time linear in the host's length (not in the number of rules)."""

    @cached_property
    def _wildcards(self) -> dict[str, MergedRule]:
        """What follows the ``*`` of each wildcard host → its rule (built on first lookup, after the merge)."""
        return {h[1:]: r for h, r in self.items() if h.startswith("*")}

    def most_specific(self, host: str) -> MergedRule | None:
        """MostSpecificHostMatch: the exact host, else the longest matching wildcard."""
        rule = self.get(host)
        if rule is not None:
            return rule
        if host == "*":
            return None  # only "*" itself covers "*"
        wild = self._wildcards
        if not wild:
            return None
        # subset_of: host (or, for a wildcard host, what follows its "*") ends with what follows the rule's "*";
        # the longest such suffix is the most specific rule, and the first one found from the left
        name = host[1:] if host.startswith("*") else host
        for i in range(len(name) + 1):
            rule = wild.get(name[i:])
            if rule is not None:
                return rule
        return None


def merged_rules(resources: Resources, workload_ns: str, findings: Findings) -> RuleSet:
    """DestinationRules visible to the gateway, merged per resolved host."""
    visible = [
        dr for dr in sorted(resources.destination_rules, key=lambda r: r.sort_key())
        if visible_to(dr.obj.spec.export_to, dr.namespace, workload_ns)
    ]
    out = RuleSet()
    for dr in visible:
        host = fqdn(dr.obj.spec.host, dr.namespace)
        if host not in out:
            out[host] = MergedRule(host, [dr], dr.obj.spec.traffic_policy, list(dr.obj.spec.subsets))
            continue
        m = out[host]
        first = m.rules[0]
        findings.warning(dr.file, dr.line("spec", "host"), "EG0209",
                         f"DestinationRule {dr.key} is one of several for {host} (first: {first.key} at "
                         f"{first.file}:{first.line('spec', 'host')}); subsets are merged, the first trafficPolicy wins",
                         "spec.host")
        m.rules.append(dr)
        if m.traffic_policy is None:
            m.traffic_policy = dr.obj.spec.traffic_policy
        names = {s.name for s in m.subsets}
        for s in dr.obj.spec.subsets:
            if s.name in names:
                findings.warning(dr.file, dr.line("spec", "subsets"), "EG0209",
                                 f"DestinationRule {dr.key}: subset {s.name} of {host} is already defined; the first wins",
                                 "spec.subsets")
                continue
            m.subsets.append(s)
    return out


def rule_for(host: str, rules: RuleSet) -> MergedRule | None:
    """MostSpecificHostMatch: the exact host, else the longest matching wildcard."""
    return rules.most_specific(host)
