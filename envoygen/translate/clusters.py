"""Services and DestinationRules → Envoy clusters (cluster*.go in Istio).

Every port of every service in the registry gets a cluster
``outbound|<port>||<host>``, and every DestinationRule subset one more per
port, as istiod sends them to a gateway.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import ir
from .. import names
from ..model.networking import ConnectionPool, LoadBalancer, OutlierDetection, Subset, TrafficPolicy
from .context import Context
from .upstream_tls import upstream_tls
from ..resolve.registry import MergedRule, ServiceInfo, SvcPort

MAX = 4294967295


@dataclass(frozen=True)
class Policy:
    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: object | None = None


def _port_level(tp: TrafficPolicy | None, port: int) -> Policy | None:
    if tp is None:
        return None
    for pls in tp.port_level_settings:
        if pls.port.number == port:
            return Policy(pls.load_balancer, pls.connection_pool, pls.outlier_detection, pls.tls)
    return None


def effective_policy(rule: MergedRule | None, port: int, subset: str) -> Policy:
    """GetPortLevelTrafficPolicy + MergeSubsetTrafficPolicy."""
    if rule is None:
        return Policy()
    tp = rule.traffic_policy
    base = _port_level(tp, port) or (Policy(tp.load_balancer, tp.connection_pool, tp.outlier_detection, tp.tls) if tp else Policy())
    if not subset:
        return base
    sub: Subset | None = rule.subset(subset)
    if sub is None or sub.traffic_policy is None:
        return base
    stp = sub.traffic_policy
    pl = _port_level(stp, port)
    if pl is not None:
        return pl
    return Policy(
        stp.load_balancer or base.load_balancer,
        stp.connection_pool or base.connection_pool,
        stp.outlier_detection or base.outlier_detection,
        stp.tls or base.tls,
    )


def hash_policies(policy: Policy) -> tuple[ir.HashPolicy, ...]:
    ch = policy.load_balancer.consistent_hash if policy.load_balancer else None
    if ch is None:
        return ()
    if ch.http_header_name:
        return (ir.HashPolicy("header", ch.http_header_name),)
    if ch.http_cookie:
        return (ir.HashPolicy("cookie", ch.http_cookie.name, ch.http_cookie.ttl, ch.http_cookie.path),)
    if ch.use_source_ip:
        return (ir.HashPolicy("connection"),)
    return (ir.HashPolicy("query_parameter", ch.http_query_parameter_name or ""),)


def _endpoints(svc: ServiceInfo, port: SvcPort, labels: dict[str, str]) -> tuple[ir.Endpoint, ...]:
    out = []
    for ep in svc.endpoints:
        if any(ep.labels.get(k) != v for k, v in labels.items()):
            continue
        out.append(ir.Endpoint(ep.address, ep.ports.get(port.name, port.target), ep.weight, ep.locality or ""))
    if not out and svc.resolution == "DNS" and not svc.endpoints and not svc.host.startswith("*"):
        out.append(ir.Endpoint(svc.host, port.target))
    return tuple(out)


def _load_balancer(lb: LoadBalancer | None) -> dict:
    if lb is None:
        return {}
    if lb.consistent_hash is not None:
        ch = lb.consistent_hash
        if ch.maglev is not None:
            return {"lb_policy": "MAGLEV", "maglev_table_size": ch.maglev.table_size}
        return {"lb_policy": "RING_HASH",
                "ring_size": (ch.ring_hash.minimum_ring_size if ch.ring_hash else None) or ch.minimum_ring_size or 1024}
    if lb.simple in ("ROUND_ROBIN", "RANDOM"):
        return {"lb_policy": lb.simple}
    return {}


# connectionPool fields that map one to one onto an IR cluster field when set (and not 0)
TCP_POOL_FIELDS = (("max_connections", "max_connections"), ("connect_timeout", "connect_timeout"),
                   ("max_connection_duration", "max_connection_duration"), ("idle_timeout", "idle_timeout"))
HTTP_POOL_FIELDS = (("http1_max_pending_requests", "max_pending_requests"), ("http2_max_requests", "max_requests"),
                    ("max_retries", "max_retries"), ("max_requests_per_connection", "max_requests_per_connection"),
                    ("idle_timeout", "idle_timeout"))


def _copy_set(src: object, fields: tuple[tuple[str, str], ...], kw: dict) -> None:
    for name, ir_name in fields:
        value = getattr(src, name)
        if value:
            kw[ir_name] = value


def _tcp_pool(pool: ConnectionPool | None, kw: dict) -> None:
    """connectionPool.tcp → circuit breaker, connect/idle timeouts, keepalive (connect_timeout in ``kw``)."""
    t = pool.tcp if pool is not None else None
    if t is None:
        return
    _copy_set(t, TCP_POOL_FIELDS, kw)
    if t.tcp_keepalive is not None:
        k = t.tcp_keepalive
        kw["tcp_keepalive"] = (k.probes, int(k.time) if k.time else None, int(k.interval) if k.interval else None)


def _http_pool(pool: ConnectionPool | None, protocol: str, kw: dict) -> None:
    """connectionPool.http → circuit breakers, per-connection limits, h2 upgrade (``http2`` in ``kw``).
    Applied after the tcp settings: an http idleTimeout wins over the tcp one."""
    h = pool.http if pool is not None else None
    if h is None:
        return
    _copy_set(h, HTTP_POOL_FIELDS, kw)
    if h.use_client_protocol:
        kw["use_downstream_protocol"] = True
    if h.h2_upgrade_policy == "UPGRADE" and protocol == "HTTP":
        kw["http2"] = True
    elif h.h2_upgrade_policy == "DO_NOT_UPGRADE" and protocol == "HTTP":
        kw["http2"] = False
    if h.max_concurrent_streams and kw["http2"]:
        kw["max_concurrent_streams"] = h.max_concurrent_streams


def _outlier(od: OutlierDetection | None, kw: dict) -> None:
    if od is None:
        return
    kw["outlier"] = ir.OutlierDetection(
        consecutive_5xx=od.consecutive5xx_errors,
        consecutive_gateway_failure=od.consecutive_gateway_errors,
        enforcing_consecutive_5xx=100 if od.consecutive5xx_errors else 0,
        enforcing_consecutive_gateway_failure=100 if od.consecutive_gateway_errors else 0,
        interval=od.interval,
        base_ejection_time=od.base_ejection_time,
        max_ejection_percent=od.max_ejection_percent or None,
        split_external_local_origin_errors=od.split_external_local_origin_errors,
        consecutive_local_origin_failure=od.consecutive_local_origin_failures,
    )
    kw["healthy_panic_threshold"] = od.min_health_percent or 0


def build_cluster(ctx: Context, svc: ServiceInfo, port: SvcPort, subset: str, rule: MergedRule | None) -> ir.Cluster:
    mesh = ctx.workload.mesh
    policy = effective_policy(rule, port.number, subset)
    labels = dict(rule.subset(subset).labels) if (rule and subset and rule.subset(subset)) else {}
    discovery = {"STATIC": "STATIC", "DNS": "STRICT_DNS", "DNS_ROUND_ROBIN": "LOGICAL_DNS"}.get(svc.resolution, "STATIC")
    kw: dict = _load_balancer(policy.load_balancer)
    kw["connect_timeout"] = mesh.connect_timeout if mesh.connect_timeout is not None else 10.0
    kw["http2"] = port.protocol in ("HTTP2", "GRPC", "GRPC-WEB") or mesh.h2_upgrade_policy == "UPGRADE" and port.protocol == "HTTP"
    _tcp_pool(policy.connection_pool, kw)
    _http_pool(policy.connection_pool, port.protocol, kw)
    _outlier(policy.outlier_detection, kw)
    if policy.tls is not None and rule is not None:
        first = rule.rules[0]
        kw["tls"] = upstream_tls(ctx, policy.tls, kw["http2"], (first.file, first.line("spec", "trafficPolicy"),  # type: ignore[arg-type]
                                                               "spec.trafficPolicy.tls"),
                                 names.mesh_sni(port.number, subset, svc.host))
    return ir.Cluster(
        name=names.cluster(port.number, subset, svc.host),
        discovery=discovery,  # type: ignore[arg-type]
        endpoints=_endpoints(svc, port, labels),
        dns_refresh_rate=mesh.dns_refresh_rate or 60.0,
        service=svc.host,
        port=port.number,
        subset=subset,
        buffer_limit=ctx.hardening.cluster_buffer_limit,
        # Istio's util.AddConfigInfoMetadata: the (first merged) DestinationRule, for istioctl's DESTINATION RULE
        metadata_dr=(f"/apis/networking.istio.io/v1/namespaces/{rule.rules[0].namespace}/destination-rule/"
                     f"{rule.rules[0].name}") if rule is not None and rule.rules else "",
        **kw,
    )
