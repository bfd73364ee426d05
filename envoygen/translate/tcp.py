"""VirtualService ``tcp:`` and ``tls:`` → tcp_proxy filter chains
(Istio's buildGatewayNetworkFiltersFromTCPRoutes and TLS passthrough chains)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import ir
from .. import names
from ..model.hosts import fqdn, gateway_ref, matches
from ..model.networking import L4Match, RouteDestination
from .context import Context
from .http import destination_port
from ..resolve.registry import MergedRule, ServiceInfo, rule_for

if TYPE_CHECKING:
    from .gateway import BoundServer


def _match_applies(m: L4Match, port: int, gateway: str, vs_ns: str) -> bool:
    if m.port is not None and m.port != port:
        return False
    if m.gateways and gateway not in {gateway_ref(g, vs_ns) for g in m.gateways}:
        return False
    return True


def _clusters(dests: list[RouteDestination], vs_ns: str, registry: dict[str, ServiceInfo], port: int) -> tuple[ir.WeightedCluster, ...]:
    single = len(dests) == 1
    out = []
    for d in dests:
        if not single and d.weight == 0:
            continue
        host = fqdn(d.destination.host, vs_ns)
        p = destination_port(d.destination, host, registry, port)
        out.append(ir.WeightedCluster(names.cluster(p, d.destination.subset or "", host), d.weight if not single else 100))
    return tuple(out)


def _vs_matches_server(bs: "BoundServer", vs) -> bool:
    server_hosts = [h for ns, h in bs.hosts if ns in ("*", vs.namespace)]
    return any(matches(fqdn(h, vs.namespace), sh) for h in vs.obj.spec.hosts for sh in server_hosts)


def _tcp_proxy(stat: str, clusters: tuple[ir.WeightedCluster, ...], dests: list[RouteDestination], vs_ns: str,
               rules: dict[str, MergedRule], access_log: ir.AccessLog | None, mongo: bool = False) -> ir.TcpProxy:
    """networkfilter.go: idle timeout, connection duration and source-IP hashing come from the
    DestinationRule of the first destination: its top-level connectionPool.tcp (never port-level),
    and its consistentHash.useSourceIp unless the subset's own load balancer says otherwise."""
    d = dests[0].destination
    rule = rule_for(fqdn(d.host, vs_ns), rules)
    tcp = None
    source_ip = False
    if rule is not None:
        tp = rule.traffic_policy
        pool = tp.connection_pool if tp else None
        tcp = pool.tcp if pool else None
        ch = tp.load_balancer.consistent_hash if tp and tp.load_balancer else None
        source_ip = bool(ch and ch.use_source_ip)
        sub = rule.subset(d.subset) if d.subset else None
        if sub is not None and sub.traffic_policy is not None and sub.traffic_policy.load_balancer is not None:
            sch = sub.traffic_policy.load_balancer.consistent_hash
            source_ip = bool(sch and sch.use_source_ip)
    return ir.TcpProxy(stat, clusters, tcp.idle_timeout if tcp else None, access_log,
                       tcp.max_connection_duration if tcp else None, source_ip, weighted=len(dests) > 1, mongo=mongo)


def tcp_proxy_for_server(ctx: Context, bs: "BoundServer", registry: dict[str, ServiceInfo],
                         access_log: ir.AccessLog | None, rules: dict[str, MergedRule]) -> ir.TcpProxy | None:
    """The first VirtualService (in order) with a tcp route that applies wins."""
    port = bs.server.port.number
    for vs in ctx.view.virtual_services_for(bs.gw_key):
        if not _vs_matches_server(bs, vs):
            continue
        for tcp in vs.obj.spec.tcp:
            if tcp.match and not any(_match_applies(m, port, bs.gw_key, vs.namespace) for m in tcp.match):
                continue
            if not tcp.route:
                continue
            clusters = _clusters(tcp.route, vs.namespace, registry, port)
            if not clusters:
                continue
            stat = clusters[0].name if len(tcp.route) == 1 else names.weighted_tcp_stat_prefix(vs.name, vs.namespace)
            return _tcp_proxy(stat, clusters, tcp.route, vs.namespace, rules, access_log,
                              mongo=bs.server.port.protocol.upper() == "MONGO")
    return None


def passthrough_chains(ctx: Context, bs: "BoundServer", registry: dict[str, ServiceInfo],
                       access_log: ir.AccessLog | None, existing: list[ir.FilterChain],
                       rules: dict[str, MergedRule]) -> list[ir.FilterChain]:
    """One chain per VS ``tls[].match``, server_names = sniHosts; duplicate SNI: first wins."""
    port = bs.server.port.number
    used = {n for c in existing for n in c.server_names}
    out: list[ir.FilterChain] = []
    for vs in ctx.view.virtual_services_for(bs.gw_key):
        if not _vs_matches_server(bs, vs):
            continue
        for ti, tls in enumerate(vs.obj.spec.tls):
            for mi, m in enumerate(tls.match):
                if not _match_applies(m, port, bs.gw_key, vs.namespace):
                    continue
                snis = [sni.lower() for sni in m.sni_hosts]
                dup = [x for x in snis if x in used]
                if dup:
                    # CheckDuplicates: the whole match is skipped, not just the duplicate name
                    ctx.findings.warning(vs.file, vs.line("spec", "tls", ti, "match", mi, "sniHosts"), "EG0206",
                                         f"VirtualService {vs.key}: tls[{ti}].match[{mi}] skipped: SNI {', '.join(dup)} "
                                         f"on port {port} is already routed (the first wins, as in Istio)",
                                         f"spec.tls[{ti}].match[{mi}].sniHosts")
                    continue
                if not snis or not tls.route:
                    continue
                clusters = _clusters(tls.route, vs.namespace, registry, port)
                if not clusters:
                    continue
                used.update(snis)
                stat = clusters[0].name if len(tls.route) == 1 else names.weighted_tcp_stat_prefix(vs.name, vs.namespace)
                out.append(ir.FilterChain(name=names.passthrough_chain(bs.gateway.name, bs.gateway.namespace, vs.name, ti, mi),
                                          server_names=() if "*" in snis else tuple(sorted(snis)),  # toFilterChainMatch
                                          tcp=_tcp_proxy(stat, clusters, tls.route, vs.namespace, rules, access_log)))
    return out
