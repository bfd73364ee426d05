"""VirtualService ``http:`` → Envoy routes (Istio's route/route.go, retry/retry.go).

Small functions, one Istio field each.  ``routes_for_vs`` is
BuildHTTPRoutesForVirtualService for one gateway server.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import ir
from ..model import Res
from .. import names
from ..model.hosts import fqdn, gateway_ref
from ..model.networking import (
    CorsPolicy,
    Destination,
    Headers,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPRedirect,
    HTTPRetry,
    HTTPRoute,
    VirtualService,
)
from ..model.operator import RetryPolicy as MeshRetryPolicy
from .clusters import effective_policy, hash_policies
from .context import Context
from ..resolve.matches import is_catch_all, route_match, string_matcher
from ..resolve.registry import MergedRule, ServiceInfo, rule_for

DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"

GRPC_CODES = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9, "ABORTED": 10,
    "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}

REDIRECT_CODES = {0: "MOVED_PERMANENTLY", 301: "MOVED_PERMANENTLY", 302: "FOUND", 303: "SEE_OTHER",
                  307: "TEMPORARY_REDIRECT", 308: "PERMANENT_REDIRECT"}


@dataclass(frozen=True)
class ServerScope:
    """The gateway server a route is generated for."""

    gateway: str  # ns/name
    port: int  # server port (vhost names, match.port, default destination port)
    tls: bool  # server terminates TLS (redirect scheme default)


# ------------------------------------------------------------------ matches
# ------------------------------------------------------------------ actions
_NO_HEADER_OPS = ir.HeaderOps()  # immutable: shared by every route without header operations


def header_ops(h: Headers | None) -> tuple[ir.HeaderOps, str | None]:
    """translateAppendHeaders: (operations, host rewrite from :authority/host)."""
    if h is None:
        return _NO_HEADER_OPS, None
    host_rewrite = None
    req_add: list[ir.HeaderValue] = []
    resp_add: list[ir.HeaderValue] = []

    def ops(src, out: list[ir.HeaderValue], request: bool) -> None:
        nonlocal host_rewrite
        if src is None:
            return
        for action, items in (("APPEND_IF_EXISTS_OR_ADD", src.add), ("OVERWRITE_IF_EXISTS_OR_ADD", src.set)):
            for k in sorted(items):
                lk = k.lower()
                if request and lk in (":authority", "host"):
                    if action == "OVERWRITE_IF_EXISTS_OR_ADD" or host_rewrite is None:
                        host_rewrite = items[k]
                    continue
                if lk.startswith(":") or lk == "host":
                    continue  # isInternalHeader: the analyzer warns
                out.append(ir.HeaderValue(lk, items[k], action))  # type: ignore[arg-type]

    ops(h.request, req_add, True)
    ops(h.response, resp_add, False)
    req_add.sort(key=lambda v: v.key)
    resp_add.sort(key=lambda v: v.key)
    def removable(names: list[str]) -> tuple[str, ...]:
        # dropInternal: pseudo-headers and host cannot be removed (the analyzer warns)
        return tuple(sorted({x.lower() for x in names if not x.startswith(":") and x.lower() != "host"}))

    return ir.HeaderOps(
        tuple(req_add),
        removable(h.request.remove if h.request else []),
        tuple(resp_add),
        removable(h.response.remove if h.response else []),
    ), host_rewrite


# Istio's default retry policy (immutable, shared by every route that has no other), by "a hash policy is set"
_ISTIO_DEFAULT_RETRY = {hashed: ir.RetryPolicy(DEFAULT_RETRY_ON, 2, previous_hosts=not hashed) for hashed in (False, True)}


def retry_policy(r: HTTPRetry | MeshRetryPolicy | None, default: MeshRetryPolicy | None, hashed: bool) -> ir.RetryPolicy | None:
    """retry.ConvertPolicy."""
    if r is None:
        if default is not None:
            return retry_policy(default, None, hashed)
        return _ISTIO_DEFAULT_RETRY[hashed]
    if r.attempts == 0:
        return None
    retry_on = DEFAULT_RETRY_ON
    codes: list[int] = []
    if r.retry_on:
        parts = []
        for token in (t.strip() for t in r.retry_on.split(",")):
            if not token:
                continue
            if token.isdigit():
                codes.append(int(token))
            else:
                parts.append(token)
        if codes and "retriable-status-codes" not in parts:
            parts.append("retriable-status-codes")
        retry_on = ",".join(parts)
    # ConvertPolicy: with a hash policy the base is DefaultConsistentHashPolicy (no previous_hosts)
    previous_hosts = r.retry_ignore_previous_hosts if r.retry_ignore_previous_hosts is not None else not hashed
    return ir.RetryPolicy(
        retry_on=retry_on,
        num_retries=r.attempts,
        per_try_timeout=r.per_try_timeout,
        retriable_status_codes=tuple(codes),
        previous_hosts=previous_hosts,
        previous_priorities=bool(r.retry_remote_localities),
    )


def redirect_action(r: HTTPRedirect, scope: ServerScope) -> ir.Redirect:
    """ApplyRedirect."""
    port = None
    if r.port is not None:
        port = r.port
    elif r.derive_port == "FROM_REQUEST_PORT":
        port = scope.port
    if port is not None:
        scheme = r.scheme or ("https" if scope.tls else "http")
        if (port == 80 and scheme == "http") or (port == 443 and scheme == "https"):
            port = None
    return ir.Redirect(REDIRECT_CODES[r.redirect_code], host=r.authority, path=r.uri,  # type: ignore[arg-type]
                       prefix_rewrite=r.prefix_rewrite, scheme=r.scheme, port=port)


def _mirror_fraction(percent: float | None) -> tuple[int, str]:
    """MirrorPercent: unset is all requests; a percentage is per-million."""
    return (100, "HUNDRED") if percent is None else (int(round(percent * 10000)), "MILLION")


def fault(f: HTTPFaultInjection | None) -> ir.Fault | None:
    if f is None:
        return None
    kw: dict = {}
    # TranslateFault: a percentage is per-million; the deprecated integer percent
    # (and its absence, 0) per-hundred; an abort without percentage stays unset (0%).
    if f.delay is not None and f.delay.fixed_delay is not None:
        kw["delay"] = f.delay.fixed_delay
        if f.delay.percentage is not None:
            kw["delay_fraction"] = (int(round(f.delay.percentage.value * 10000)), "MILLION")
        else:
            kw["delay_fraction"] = (f.delay.percent or 0, "HUNDRED")
    if f.abort is not None:
        if f.abort.http_status is not None:
            kw["abort_status"] = f.abort.http_status
        else:
            kw["abort_grpc_status"] = GRPC_CODES.get((f.abort.grpc_status or "").upper(), 2)
        if f.abort.percentage is not None:
            kw["abort_fraction"] = (int(round(f.abort.percentage.value * 10000)), "MILLION")
    return ir.Fault(**kw) if kw else None


def cors(c: CorsPolicy | None) -> ir.Cors | None:
    if c is None:
        return None
    # TranslateCORSPolicy: the deprecated allowOrigin only when allowOrigins is absent
    if c.allow_origins:
        origins = [string_matcher(o) for o in c.allow_origins]
    else:
        origins = [ir.StringMatcher("exact", o) for o in (c.allow_origin or [])]
    return ir.Cors(
        origins=tuple(origins),
        allow_methods=",".join(c.allow_methods) or None,
        allow_headers=",".join(c.allow_headers) or None,
        expose_headers=",".join(c.expose_headers) or None,
        max_age=int(c.max_age) if c.max_age is not None else None,
        allow_credentials=c.allow_credentials,
        forward_not_matching_preflights=c.unmatched_preflights != "IGNORE",
    )


# ------------------------------------------------------------------ destinations
def destination_port(d: Destination, host: str, registry: dict[str, ServiceInfo], server_port: int) -> int:
    """GetDestinationCluster's port choice: explicit, the service's only port, else the server port."""
    if d.port is not None:
        return d.port.number
    svc = registry.get(host)
    if svc is not None and len(svc.ports) == 1:
        return svc.ports[0].number
    return server_port


def destination_cluster(d: Destination, vs_ns: str, ctx_registry: dict[str, ServiceInfo], server_port: int) -> str:
    host = fqdn(d.host, vs_ns)
    return names.cluster(destination_port(d, host, ctx_registry, server_port), d.subset or "", host)


def _route_action(ctx: Context, http: HTTPRoute, vs: Res[VirtualService], scope: ServerScope,
                  registry: dict[str, ServiceInfo], rules: dict[str, MergedRule]) -> tuple[ir.RouteAction, ir.HeaderOps]:
    weighted: list[ir.WeightedCluster] = []
    hashes: set[tuple[ir.HashPolicy, ...]] = set()
    route_headers, route_host = header_ops(http.headers)
    single = len(http.route) == 1
    host_rewrite = route_host
    extra_headers = ir.HeaderOps()
    for dst in http.route:
        if not single and dst.weight == 0:
            continue
        host = fqdn(dst.destination.host, vs.namespace)
        port = destination_port(dst.destination, host, registry, scope.port)
        subset = dst.destination.subset or ""
        hashes.add(_hash_policies_of(ctx, host, port, subset, rules))
        dh, dhost = header_ops(dst.headers)
        name = names.cluster(port, subset, host)
        if single:
            extra_headers = dh
            if host_rewrite is None:
                host_rewrite = dhost
            weighted.append(ir.WeightedCluster(name, 100))
        else:
            weighted.append(ir.WeightedCluster(name, dst.weight, dh, dhost))
    hash_policy = next(iter(hashes)) if len(hashes) == 1 else ()
    mesh_default = ctx.workload.mesh.default_http_retry_policy
    # MirrorPercent: unset = 100%; an explicit 0 means no mirror policy at all
    mirrors = []
    if http.mirror is not None:
        pct = http.mirror_percentage.value if http.mirror_percentage is not None else None
        if pct is None or pct > 0:
            mirrors.append(ir.MirrorPolicy(destination_cluster(http.mirror, vs.namespace, registry, scope.port),
                                           _mirror_fraction(pct)))
    for m in http.mirrors:
        pct = m.percentage.value if m.percentage is not None else None
        if pct is None or pct > 0:
            mirrors.append(ir.MirrorPolicy(destination_cluster(m.destination, vs.namespace, registry, scope.port),
                                           _mirror_fraction(pct)))
    rw = http.rewrite
    if rw is not None and rw.authority:
        host_rewrite = rw.authority
    action = ir.RouteAction(
        clusters=tuple(weighted),
        weighted=not single,
        timeout=http.timeout if http.timeout is not None else 0.0,
        retry=retry_policy(http.retries, mesh_default, bool(hash_policy)),
        prefix_rewrite=rw.uri if rw is not None else None,
        regex_rewrite=(rw.uri_regex_rewrite.match, rw.uri_regex_rewrite.rewrite) if rw and rw.uri_regex_rewrite else None,
        host_rewrite=host_rewrite,
        hash_policies=hash_policy,
        mirrors=tuple(mirrors),
    )
    if extra_headers.empty():
        return action, route_headers  # header_ops' lists are sorted and unique already
    merged = ir.HeaderOps(
        tuple(sorted(route_headers.request_add + extra_headers.request_add, key=lambda v: v.key)),
        tuple(sorted(set(route_headers.request_remove + extra_headers.request_remove))),
        tuple(sorted(route_headers.response_add + extra_headers.response_add, key=lambda v: v.key)),
        tuple(sorted(set(route_headers.response_remove + extra_headers.response_remove))),
    )
    return action, merged


def _hash_policies_of(ctx: Context, host: str, port: int, subset: str, rules: dict[str, MergedRule]) -> tuple[ir.HashPolicy, ...]:
    """The hash policies of a destination's cluster, once per (host, port, subset) and translation."""
    key = (host, port, subset, id(rules))
    memo = ctx.hash_policies
    if key not in memo:
        memo[key] = hash_policies(effective_policy(rule_for(host, rules), port, subset))
    return memo[key]


def _source_match(m: HTTPMatchRequest, gateway: str, vs_ns: str, ctx: Context) -> bool:
    """sourceMatchHTTP: gateways if given, else sourceLabels ⊆ the gateway workload's labels
    and sourceNamespace == its namespace."""
    if m.gateways:
        return gateway in {gateway_ref(g, vs_ns) for g in m.gateways}
    if not ctx.workload.selects(m.source_labels):
        return False
    return not m.source_namespace or m.source_namespace == ctx.workload.namespace


def translate_route(ctx: Context, http: HTTPRoute, match: HTTPMatchRequest | None, vs: Res[VirtualService],
                    scope: ServerScope, registry: dict[str, ServiceInfo], rules: dict[str, MergedRule]) -> ir.Route | None:
    """translateRoute: None when the match does not apply to this server."""
    if match is not None:
        if match.port is not None and match.port != scope.port:
            return None
        if not _source_match(match, scope.gateway, vs.namespace, ctx):
            return None
    name = http.name or ""
    if match is not None and match.name:
        name = f"{name}.{match.name}"
    action: ir.RouteAction | ir.Redirect | ir.DirectResponse
    if http.redirect is not None:
        headers, _ = header_ops(http.headers)
        action = redirect_action(http.redirect, scope)
    elif http.direct_response is not None:
        headers, _ = header_ops(http.headers)
        body = http.direct_response.body
        action = ir.DirectResponse(http.direct_response.status,
                                   body.string if body is not None else None,
                                   body.bytes if body is not None else None)
    else:
        action, headers = _route_action(ctx, http, vs, scope, registry, rules)
    return ir.Route(
        name=name,
        match=route_match(match),
        action=action,
        headers=headers,
        fault=fault(http.fault),
        cors=cors(http.cors_policy),
        metadata_vs=f"/apis/networking.istio.io/v1/namespaces/{vs.namespace}/virtual-service/{vs.name}",
    )


def routes_for_vs(ctx: Context, vs: Res[VirtualService], scope: ServerScope,
                  registry: dict[str, ServiceInfo], rules: dict[str, MergedRule]) -> list[ir.Route]:
    """BuildHTTPRoutesForVirtualService: in order, stopping after the first catch-all."""
    out: list[ir.Route] = []
    for http in vs.obj.spec.http:
        catch_all = False
        if not http.match:
            r = translate_route(ctx, http, None, vs, scope, registry, rules)
            if r is not None:
                out.append(r)
            catch_all = True
        else:
            for m in http.match:
                r = translate_route(ctx, http, m, vs, scope, registry, rules)
                if r is not None:
                    out.append(r)
                    if is_catch_all(r.match):
                        catch_all = True
                        break
        if catch_all:
            break
    return out


def sort_vhost_routes(routes: list[ir.Route]) -> list[ir.Route]:
    """SortVHostRoutes: catch-all routes move to the end, order otherwise kept."""
    return [r for r in routes if not is_catch_all(r.match)] + [r for r in routes if is_catch_all(r.match)]
