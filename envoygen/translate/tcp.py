"""VirtualService ``tcp:`` and ``tls:`` → tcp_proxy filter chains
(Istio's buildGatewayNetworkFiltersFromTCPRoutes and TLS passthrough chains)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import ir
from ..model.hosts import cluster_name, fqdn, gateway_ref, matches
from ..model.networking import L4Match, RouteDestination
from .context import Context
from .http import destination_port
from .clusters import effective_policy
from .registry import MergedRule, ServiceInfo, rule_for

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
        out.append(ir.WeightedCluster(cluster_name(p, d.destination.subset or "", host), d.weight if not single else 100))
    return tuple(out)


def _vs_matches_server(bs: "BoundServer", vs) -> bool:
    server_hosts = [h for ns, h in bs.hosts if ns in ("*", vs.namespace)]
    return any(matches(fqdn(h, vs.namespace), sh) for h in vs.obj.spec.hosts for sh in server_hosts)


def _idle_timeout(dests: list[RouteDestination], vs_ns: str, registry: dict[str, ServiceInfo],
                  rules: dict[str, MergedRule], port: int) -> float | None:
    """DestinationRule connectionPool.tcp.idleTimeout of the first destination → tcp_proxy idle_timeout."""
    if not dests:
        return None
    d = dests[0].destination
    host = fqdn(d.host, vs_ns)
    policy = effective_policy(rule_for(host, rules), destination_port(d, host, registry, port), d.subset or "")
    pool = policy.connection_pool
    return pool.tcp.idle_timeout if pool and pool.tcp and pool.tcp.idle_timeout else None


def tcp_proxy_for_server(ctx: Context, bs: "BoundServer", registry: dict[str, ServiceInfo],
                         access_log: ir.AccessLog | None, rules: dict[str, MergedRule]) -> ir.TcpProxy | None:
    """The first VirtualService (in order) with a tcp route that applies wins."""
    from .gateway import virtual_services_for

    port = bs.server.port.number
    for vs in virtual_services_for(ctx, bs.gw_key):
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
            stat = clusters[0].name if len(clusters) == 1 else f"{vs.name}.{vs.namespace}"
            return ir.TcpProxy(stat, clusters, _idle_timeout(tcp.route, vs.namespace, registry, rules, port), access_log)
    return None


def passthrough_chains(ctx: Context, bs: "BoundServer", registry: dict[str, ServiceInfo],
                       access_log: ir.AccessLog | None, existing: list[ir.FilterChain],
                       rules: dict[str, MergedRule]) -> list[ir.FilterChain]:
    """One chain per VS ``tls[].match``, server_names = sniHosts; duplicate SNI: first wins."""
    from .gateway import virtual_services_for

    port = bs.server.port.number
    used = {n for c in existing for n in c.server_names}
    out: list[ir.FilterChain] = []
    for vs in virtual_services_for(ctx, bs.gw_key):
        if not _vs_matches_server(bs, vs):
            continue
        for ti, tls in enumerate(vs.obj.spec.tls):
            for mi, m in enumerate(tls.match):
                if not _match_applies(m, port, bs.gw_key, vs.namespace):
                    continue
                snis = []
                for sni in m.sni_hosts:
                    s = sni.lower()
                    if s in used:
                        ctx.findings.warning(vs.file, vs.line("spec", "tls", ti, "match", mi, "sniHosts"), "EG0206",
                                             f"VirtualService {vs.key}: SNI {s} on port {port} is already routed; the first wins",
                                             f"spec.tls[{ti}].match[{mi}].sniHosts")
                        continue
                    snis.append(s)
                if not snis or not tls.route:
                    continue
                clusters = _clusters(tls.route, vs.namespace, registry, port)
                if not clusters:
                    continue
                used.update(snis)
                stat = clusters[0].name if len(clusters) == 1 else f"{vs.name}.{vs.namespace}"
                out.append(ir.FilterChain(name=f"{bs.gateway.name}.{bs.gateway.namespace}.{vs.name}.tls{ti}.{mi}",
                                          server_names=tuple(sorted(snis)),
                                          tcp=ir.TcpProxy(stat, clusters,
                                                          _idle_timeout(tls.route, vs.namespace, registry, rules, port),
                                                          access_log)))
    return out
