"""Gateway servers → listeners and filter chains (Istio's model/gateway.go and
networking/core/gateway.go).

Servers of all Gateways that select the workload are merged per (bind, bound
port) in Gateway creation order; the first server's protocol decides what else
may share the port.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import ir, names
from ..model import Res
from ..model.hosts import HostIndex, fqdn, split_server_host
from ..model.networking import Gateway, Server, VirtualService
from .context import Context
from .http import ServerScope, routes_for_vs, sort_vhost_routes
from ..resolve.registry import MergedRule, ServiceInfo
from .tcp import tcp_proxy_for_server, passthrough_chains
from .auto_passthrough import auto_passthrough_chains
from .tls import downstream_tls

HTTP_PROTOCOLS = {"HTTP", "HTTP2", "GRPC", "GRPC-WEB"}
TCP_PROTOCOLS = {"TCP", "MONGO", "MYSQL", "REDIS"}


def server_kind(server: Server) -> str | None:
    """http | https | tls | passthrough | tcp, or None for protocols we do not know."""
    proto = server.port.protocol.upper()
    mode = server.tls.mode if server.tls else None
    if proto in HTTP_PROTOCOLS:
        return "http"
    if proto == "HTTPS":
        return "passthrough" if mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH") else "https"
    if proto == "TLS":
        return "passthrough" if mode in (None, "PASSTHROUGH", "AUTO_PASSTHROUGH") else "tls"
    if proto in TCP_PROTOCOLS:
        return "tcp"
    return None


@dataclass
class BoundServer:
    gateway: Res[Gateway]
    index: int
    server: Server
    kind: str
    hosts: list[tuple[str, str]]  # (namespace filter, hostname)

    @property
    def gw_key(self) -> str:
        return self.gateway.key

    def index_for(self, namespace: str) -> HostIndex:
        """The hosts a VirtualService of ``namespace`` may use, indexed (cached per namespace)."""
        cache = self.__dict__.setdefault("_indexes", {})
        if namespace not in cache:
            cache[namespace] = HostIndex([h for ns, h in self.hosts if ns in ("*", namespace)])
        return cache[namespace]

    def path(self, *rest: object) -> str:
        p = f"spec.servers[{self.index}]"
        for r in rest:
            p += f"[{r}]" if isinstance(r, int) else f".{r}"
        return p

    def line(self, *rest: object) -> int:
        return self.gateway.line("spec", "servers", self.index, *rest)


@dataclass
class PortGroup:
    bind: str
    port: int
    kind: str  # kind of the first server
    servers: list[BoundServer] = field(default_factory=list)


def gateways_for(ctx: Context) -> list[Res[Gateway]]:
    return sorted((g for g in ctx.resources.gateways if ctx.workload.selects(g.obj.spec.selector)),
                  key=lambda g: g.sort_key())


def merge_servers(ctx: Context) -> list[PortGroup]:
    """mergeGateways, with conflicts reported instead of dropped silently."""
    groups: dict[tuple[str, int], PortGroup] = {}
    for gw in gateways_for(ctx):
        for i, s in enumerate(gw.obj.spec.servers):
            kind = server_kind(s)
            if kind is None:
                continue  # the analyzer reports unknown protocols
            bind_port = ctx.workload.bind_port(s.port.number, ctx.options.port_map)
            bind = s.bind or "0.0.0.0"
            bs = BoundServer(gw, i, s, kind, [split_server_host(h, gw.namespace) for h in s.hosts])
            key = (bind, bind_port)
            group = groups.get(key)
            if group is None:
                groups[key] = PortGroup(bind, bind_port, kind, [bs])
                continue
            first = group.servers[0]
            ok = (group.kind == "http" and kind == "http") or (
                group.kind in ("https", "tls", "passthrough") and kind in ("https", "tls", "passthrough"))
            if not ok:
                ctx.findings.error(
                    gw.file, bs.line("port"), "EG0206",
                    f"Gateway {gw.key} server {s.port.name} ({s.port.protocol}) cannot share {bind}:{bind_port} with "
                    f"{first.server.port.protocol} server {first.server.port.name} of Gateway {first.gw_key}; Istio drops it",
                    bs.path("port"), "use another port number")
                continue
            group.servers.append(bs)
    return list(groups.values())


def server_vs_hosts(bs: BoundServer, vs: Res[VirtualService]) -> list[str]:
    """The VS hosts this server admits (namespace filter), resolved to FQDN."""
    vs_hosts = [fqdn(h, vs.namespace) for h in vs.obj.spec.hosts]
    index = bs.index_for(vs.namespace)
    return index.intersect(vs_hosts)


def _hcm(ctx: Context, stat_prefix: str, rc: ir.RouteConfig, access_log: ir.AccessLog | None) -> ir.HttpConnectionManager:
    topo = ctx.workload.mesh.default_config.gateway_topology if ctx.workload.mesh.default_config else None
    hops = topo.num_trusted_proxies if topo and topo.num_trusted_proxies else 0
    routes = [r for vh in rc.virtual_hosts for r in vh.routes]
    return ir.HttpConnectionManager(stat_prefix, rc, hops, access_log,
                                    uses_fault=any(r.fault for r in routes), uses_cors=any(r.cors for r in routes),
                                    hardening=ctx.hardening.http)


def build_route_config(ctx: Context, name: str, servers: list[BoundServer], registry: dict[str, ServiceInfo],
                       rules: dict[str, MergedRule]) -> ir.RouteConfig:
    """buildGatewayHTTPRouteConfig for the servers that share one route name."""
    vhosts: dict[str, dict] = {}
    for bs in servers:
        port = bs.server.port.number
        scope = ServerScope(bs.gw_key, port, bs.kind == "https")
        redirect = bool(bs.server.tls and bs.server.tls.https_redirect) and bs.kind == "http"
        served: set[str] = set()
        for vs in ctx.view.virtual_services_for(bs.gw_key):
            hosts = server_vs_hosts(bs, vs)
            if not hosts:
                continue
            routes = routes_for_vs(ctx, vs, scope, registry, rules)
            for h in hosts:
                served.add(h)
                vh = vhosts.setdefault(h, {"port": port, "routes": [], "tls": False, "vs": [], "seen": set()})
                if (bs.gw_key, vs.key) in vh["seen"]:
                    continue  # the same VirtualService through another server of this Gateway adds nothing
                vh["seen"].add((bs.gw_key, vs.key))
                if vs.key not in vh["vs"]:
                    vh["vs"].append(vs.key)
                vh["routes"].extend(routes)
                vh["tls"] = vh["tls"] or redirect
        if redirect:
            for _, h in bs.hosts:
                vh = vhosts.setdefault(h, {"port": port, "routes": [], "tls": True, "vs": [], "seen": set()})
                vh["tls"] = True
    out = []
    for host, vh in vhosts.items():
        if not vh["routes"] and not vh["tls"]:
            continue
        if len(vh["vs"]) > 1:
            _warn_conflicts(ctx, host, vh["routes"])
        out.append(ir.VirtualHost(
            name=names.virtual_host(host, vh["port"]),
            domains=(host,),
            routes=tuple(sort_vhost_routes(vh["routes"])),
            require_tls=vh["tls"],
            request_body_buffer_limit=ctx.hardening.request_body_buffer_limit,
        ))
    out.sort(key=lambda v: v.name)
    if not out:
        port = servers[0].server.port.number if servers else 0
        out = [ir.VirtualHost(names.blackhole_virtual_host(port), ("*",), (), include_request_attempt_count=False)]
    return ir.RouteConfig(name, tuple(out))


def _warn_conflicts(ctx: Context, host: str, routes: list[ir.Route]) -> None:
    """EG0213: VirtualServices merged into one host whose routes match the same requests."""
    first: dict[ir.RouteMatch, str] = {}
    by_key = {f"/apis/networking.istio.io/v1/namespaces/{v.namespace}/virtual-service/{v.name}": v
              for v in ctx.resources.virtual_services}
    for r in routes:
        owner = first.setdefault(r.match, r.metadata_vs)
        if owner != r.metadata_vs:
            vs, other = by_key[r.metadata_vs], by_key[owner]
            what = "every request" if r.match.path == "/" and r.match.path_kind == "prefix" else f"{r.match.path_kind} {r.match.path}"
            ctx.findings.warning(vs.file, vs.line("spec", "http"), "EG0213",
                                 f"VirtualService {vs.key}: a route for {host} matching {what} is shadowed by "
                                 f"VirtualService {other.key}, which comes first (creation time, name)", "spec.http")


def _dedupe_sni(ctx: Context, group: PortGroup) -> None:
    """CheckDuplicates in mergeGateways: a TLS server (HTTPS, TLS, PASSTHROUGH) that repeats a host
    already used on this port is skipped whole; the first server wins (literal host, ns/ included)."""
    seen: dict[str, BoundServer] = {}
    keep: list[BoundServer] = []
    for bs in group.servers:
        literals = [h if ns == "*" else f"{ns}/{h}" for ns, h in bs.hosts]
        dup = [x for x in literals if x in seen]
        if dup:
            first = seen[dup[0]]
            ctx.findings.warning(bs.gateway.file, bs.line("hosts"), "EG0206",
                                 f"Gateway {bs.gw_key}: server {bs.server.port.name} skipped: host {', '.join(dup)} on port "
                                 f"{group.port} is already served by Gateway {first.gw_key} server {first.server.port.name} "
                                 "(the first wins, as in Istio)", bs.path("hosts"))
            continue
        for x in literals:
            seen[x] = bs
        keep.append(bs)
    group.servers = keep


def build_listeners(ctx: Context, registry: dict[str, ServiceInfo], rules: dict[str, MergedRule],
                    access_log: ir.AccessLog | None) -> list[ir.Listener]:
    listeners: list[ir.Listener] = []
    for group in merge_servers(ctx):
        lname = names.listener(group.bind, group.port)
        chains: list[ir.FilterChain] = []
        failed = False
        if group.kind == "http":
            rc = build_route_config(ctx, names.http_route_config(group.port, group.bind), group.servers, registry, rules)
            chains.append(ir.FilterChain(name=lname, http=_hcm(ctx, names.stat_prefix(lname), rc, access_log)))
        elif group.kind == "tcp":
            bs = group.servers[0]
            tcp = tcp_proxy_for_server(ctx, bs, registry, access_log, rules)
            if tcp is not None:
                chains.append(ir.FilterChain(name=lname, tcp=tcp))
        else:
            _dedupe_sni(ctx, group)
            for bs in group.servers:
                if not bs.hosts and bs.kind != "passthrough":
                    continue
                snis = tuple(sorted({h for _, h in bs.hosts})) if all(h != "*" for _, h in bs.hosts) else ()
                if bs.kind == "passthrough" and bs.server.tls and bs.server.tls.mode == "AUTO_PASSTHROUGH":
                    chains.extend(auto_passthrough_chains(ctx, bs, registry, rules, access_log))
                    continue
                if bs.kind == "passthrough":
                    chains.extend(passthrough_chains(ctx, bs, registry, access_log, chains, rules))
                    continue
                tls = downstream_tls(ctx, bs)
                if tls is None:
                    failed = True
                    continue
                if bs.kind == "https":
                    rname = names.https_route_config(bs.server.port.number, bs.server.port.name, bs.gateway.name,
                                                   bs.gateway.namespace, group.bind)
                    rc = build_route_config(ctx, rname, [bs], registry, rules)
                    chains.append(ir.FilterChain(name=rname, server_names=snis, tls=tls,
                                                 http=_hcm(ctx, bs.server.name or names.stat_prefix(lname), rc, access_log)))
                else:
                    tcp = tcp_proxy_for_server(ctx, bs, registry, access_log, rules)
                    if tcp is not None:
                        chains.append(ir.FilterChain(name=names.tls_filter_chain(lname, bs.server.port.name, bs.gateway.name), server_names=snis,
                                                     tls=tls, tcp=tcp))
        if not chains and failed:
            continue  # the servers' errors are already reported; "no route" would mislead
        if not chains:
            first = group.servers[0]
            ctx.findings.warning(first.gateway.file, first.line("port"), "EG0212",
                                 f"no listener for {lname}: no route matches the {first.server.port.protocol} server(s) on it "
                                 "(Istio omits such a listener)", first.path("port"))
            continue
        inspector = any(c.server_names for c in chains)
        listeners.append(ir.Listener(lname, group.bind, group.port, tuple(chains), inspector, access_log,
                                     buffer_limit=ctx.hardening.listener_buffer_limit))
    listeners.sort(key=lambda l: (l.port, l.address))
    return listeners
