"""DestinationRule ``trafficPolicy.connectionPool.http``: each field lands in the Envoy field
Istio puts it in, as Envoy itself loaded it (admin ``config_dump``), and where a client can
tell, as behaviour.

Istio (``pilot/pkg/networking/core/cluster_traffic_policy.go`` ``applyConnectionPool``,
``shouldH2Upgrade``; istio-semantics.md 4):

* ``http1MaxPendingRequests`` → ``circuit_breakers.thresholds[0].max_pending_requests``
* ``http2MaxRequests`` → ``max_requests``; ``maxRetries`` → ``max_retries``;
  ``tcp.maxConnections`` → ``max_connections``; every unset threshold is 4294967295
* ``maxRequestsPerConnection`` → ``HttpProtocolOptions.common_http_protocol_options.max_requests_per_connection``
* ``idleTimeout`` → ``common_http_protocol_options.idle_timeout``; ``http.idleTimeout`` wins
  over ``tcp.idleTimeout``, which is used only when the http one is unset
* ``h2UpgradePolicy: UPGRADE`` → ``explicit_http_config.http2_protocol_options`` (with
  ``maxConcurrentStreams``); ``DO_NOT_UPGRADE`` keeps HTTP/1.1 even when
  ``meshConfig.h2UpgradePolicy`` is UPGRADE.

Every value below is distinct, so a field written into its neighbour's place shows.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import textwrap

from harness import LOCALHOST, http_get, wait_until
from istio_docs import dump, gateway_doc

NS = "pool"
MAX = 4294967295
HPO = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def fqdn(short: str) -> str:
    return f"{short}.{NS}.svc.cluster.local"


def cluster_name(short: str) -> str:
    return f"outbound|80||{fqdn(short)}"


def gateway_yaml() -> str:
    return dump(gateway_doc(ns=NS))


def service_yaml(short: str, port: int, dr: str | None = None) -> str:
    """VS ``<short>.example.com`` → ServiceEntry ``<short>`` :80 → 127.0.0.1:``port``, and its DestinationRule."""
    text = f"""
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: {short}, namespace: {NS}}}
spec:
  hosts: ["{short}.example.com"]
  gateways: [gw]
  http:
  - route:
    - destination: {{host: {short}, port: {{number: 80}}}}
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: {short}, namespace: {NS}}}
spec:
  hosts: [{fqdn(short)}]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {port}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""
    if dr:
        text += f"""
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {{name: {short}, namespace: {NS}}}
spec:
  host: {short}
{textwrap.indent(textwrap.dedent(dr).strip(), "  ")}
"""
    return text


OPERATOR_MESH_H2 = """
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: cp, namespace: istio-system}
spec:
  meshConfig: {h2UpgradePolicy: UPGRADE}
"""


def clusters(gw) -> dict[str, dict]:  # noqa: ANN001
    """Name → cluster, from Envoy's config_dump."""
    out = {}
    for c in gw.config_dump("static_clusters")["configs"]:
        out[c["cluster"]["name"]] = c["cluster"]
    return out


def thresholds(cluster: dict) -> dict:
    (th,) = cluster["circuit_breakers"]["thresholds"]
    return {k: th.get(k) for k in ("max_connections", "max_pending_requests", "max_requests", "max_retries")}


def protocol_options(cluster: dict) -> dict:
    """The cluster's HttpProtocolOptions; {} when it has none (HTTP/1.1 with Envoy's defaults)."""
    return (cluster.get("typed_extension_protocol_options") or {}).get(HPO) or {}


def cluster_stat(gw, short: str, stat: str) -> int:  # noqa: ANN001
    vals = [v for k, v in gw.stats(stat).items() if fqdn(short) in k and k.endswith("." + stat)]
    assert len(vals) == 1, (short, stat, gw.stats(stat))
    return vals[0]


class Client:
    """One downstream HTTP/1.1 keep-alive connection: every request goes through the same Envoy
    worker, hence the same upstream connection pool (Envoy's pools are per worker)."""

    def __init__(self, gw) -> None:  # noqa: ANN001
        self.conn = http.client.HTTPConnection(LOCALHOST, gw.port(80), timeout=10)

    def get(self, host: str, path: str = "/") -> int:
        self.conn.request("GET", path, headers={"Host": host})
        r = self.conn.getresponse()
        r.read()
        return r.status

    def gets(self, host: str, n: int) -> None:
        for _ in range(n):
            status = self.get(host)
            assert status == 200, (host, status)

    def close(self) -> None:
        self.conn.close()


def upstream_ports(backend) -> list[int]:  # noqa: ANN001
    """Source port of Envoy's upstream connection, per request, in arrival order."""
    return [r["client_port"] for r in backend.requests]


def concurrent_gets(gw, host: str, n: int) -> list:  # noqa: ANN001
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        futs = [pool.submit(http_get, gw, 80, "/", host=host, timeout=15) for _ in range(n)]
        return [f.result(timeout=30) for f in futs]


# --------------------------------------------------------------------------
# what Envoy loaded


def test_http_pool_fields_land_in_envoy_fields(backend_factory, gateway_factory):
    b = backend_factory("b")
    text = gateway_yaml()
    text += service_yaml("all", b.port, """
        trafficPolicy:
          connectionPool:
            tcp: {maxConnections: 13}
            http: {http1MaxPendingRequests: 7, http2MaxRequests: 11, maxRequestsPerConnection: 3, maxRetries: 5,
                   idleTimeout: 17s}
    """)
    text += service_yaml("idleboth", b.port, """
        trafficPolicy:
          connectionPool:
            tcp: {idleTimeout: 30s}
            http: {idleTimeout: 9s}
    """)
    text += service_yaml("idletcp", b.port, "trafficPolicy: {connectionPool: {tcp: {idleTimeout: 31s}}}")
    text += service_yaml("pending", b.port, "trafficPolicy: {connectionPool: {http: {http1MaxPendingRequests: 19}}}")
    text += service_yaml("upgrade", b.port, """
        trafficPolicy:
          connectionPool:
            http: {h2UpgradePolicy: UPGRADE, maxConcurrentStreams: 21}
    """)
    text += service_yaml("h2default", b.port, "trafficPolicy: {connectionPool: {http: {h2UpgradePolicy: DEFAULT}}}")
    text += service_yaml("plain", b.port)
    gw = gateway_factory(text, ports=(80,))
    cl = clusters(gw)

    assert thresholds(cl[cluster_name("all")]) == {
        "max_connections": 13, "max_pending_requests": 7, "max_requests": 11, "max_retries": 5}
    assert protocol_options(cl[cluster_name("all")])["common_http_protocol_options"] == {
        "idle_timeout": "17s", "max_requests_per_connection": 3}
    assert protocol_options(cl[cluster_name("all")])["explicit_http_config"] == {"http_protocol_options": {}}

    # http.idleTimeout wins over tcp.idleTimeout; tcp.idleTimeout alone is used
    assert protocol_options(cl[cluster_name("idleboth")])["common_http_protocol_options"] == {"idle_timeout": "9s"}
    assert protocol_options(cl[cluster_name("idletcp")])["common_http_protocol_options"] == {"idle_timeout": "31s"}

    # one field set: only its threshold moves
    assert thresholds(cl[cluster_name("pending")]) == {
        "max_connections": MAX, "max_pending_requests": 19, "max_requests": MAX, "max_retries": MAX}
    assert "common_http_protocol_options" not in protocol_options(cl[cluster_name("pending")])

    # h2UpgradePolicy UPGRADE: the upstream speaks HTTP/2 (with maxConcurrentStreams); DEFAULT: HTTP/1.1
    assert protocol_options(cl[cluster_name("upgrade")])["explicit_http_config"] == {
        "http2_protocol_options": {"max_concurrent_streams": 21}}
    # DEFAULT and nothing else set: no HttpProtocolOptions at all, as Istio (HTTP/1.1 is Envoy's default)
    assert protocol_options(cl[cluster_name("h2default")]) == {}

    # no DestinationRule: Istio's defaults
    assert thresholds(cl[cluster_name("plain")]) == {
        "max_connections": MAX, "max_pending_requests": MAX, "max_requests": MAX, "max_retries": MAX}
    # Istio's cluster_builder.go writes HttpProtocolOptions only when an option is set
    assert "typed_extension_protocol_options" not in cl[cluster_name("plain")]

    for short in ("all", "idleboth", "idletcp", "pending", "h2default", "plain"):
        assert http_get(gw, 80, "/", host=f"{short}.example.com").status == 200, short


# --------------------------------------------------------------------------
# behaviour


def test_max_requests_per_connection_opens_a_new_upstream_connection(backend_factory, gateway_factory):
    two, reuse, one = backend_factory("two"), backend_factory("reuse"), backend_factory("one")
    text = gateway_yaml()
    text += service_yaml("two", two.port, "trafficPolicy: {connectionPool: {http: {maxRequestsPerConnection: 2}}}")
    text += service_yaml("one", one.port, "trafficPolicy: {connectionPool: {http: {maxRequestsPerConnection: 1}}}")
    text += service_yaml("reuse", reuse.port)
    gw = gateway_factory(text, ports=(80,))

    c = Client(gw)
    try:
        c.gets("reuse.example.com", 6)
        c.gets("two.example.com", 6)
        c.gets("one.example.com", 4)
    finally:
        c.close()
    # without a limit the one upstream connection is reused (this is what makes the others meaningful)
    assert len(set(upstream_ports(reuse))) == 1, upstream_ports(reuse)
    p = upstream_ports(two)
    assert len(p) == 6 and p[0] == p[1] and p[2] == p[3] and p[4] == p[5] and len({p[0], p[2], p[4]}) == 3, p
    p = upstream_ports(one)
    assert len(p) == 4 and len(set(p)) == 4, p
    assert cluster_stat(gw, "two", "upstream_cx_total") == 3
    assert cluster_stat(gw, "one", "upstream_cx_total") == 4
    assert cluster_stat(gw, "two", "upstream_cx_max_requests") == 3
    assert cluster_stat(gw, "reuse", "upstream_cx_total") == 1


def test_idle_timeout_closes_idle_upstream_connection(backend_factory, gateway_factory):
    idle, keep, tcp_only = backend_factory("idle"), backend_factory("keep"), backend_factory("tcponly")
    text = gateway_yaml()
    text += service_yaml("idle", idle.port, """
        trafficPolicy:
          connectionPool:
            tcp: {idleTimeout: 1h}
            http: {idleTimeout: 300ms}
    """)
    text += service_yaml("tcponly", tcp_only.port, "trafficPolicy: {connectionPool: {tcp: {idleTimeout: 300ms}}}")
    text += service_yaml("keep", keep.port)
    gw = gateway_factory(text, ports=(80,))

    c = Client(gw)
    try:
        for short, backend in (("idle", idle), ("tcponly", tcp_only)):
            assert c.get(f"{short}.example.com") == 200
            # Envoy's own counter says the idle connection was closed (bounded wait, no fixed sleep)
            wait_until(lambda s=short: cluster_stat(gw, s, "upstream_cx_idle_timeout") >= 1, 10,
                       message=f"{short}: upstream connection never closed for idleness")
            assert c.get(f"{short}.example.com") == 200
            p = upstream_ports(backend)
            assert len(p) == 2 and p[0] != p[1], (short, p)

        # the control: no idle timeout; after as long a pause, the connection is reused
        assert c.get("keep.example.com") == 200
        wait_until(lambda: cluster_stat(gw, "idle", "upstream_cx_idle_timeout") >= 2, 10,
                   message="the second idle connection was never closed")
        assert c.get("keep.example.com") == 200
    finally:
        c.close()
    assert cluster_stat(gw, "keep", "upstream_cx_idle_timeout") == 0
    assert cluster_stat(gw, "idle", "upstream_cx_total") == 2
    p = upstream_ports(keep)
    assert len(p) == 2 and p[0] == p[1], p


def test_http2_max_requests_overflows_with_x_envoy_overloaded(backend_factory, gateway_factory):
    slow = backend_factory("slow", delay=1.0)
    text = gateway_yaml()
    text += service_yaml("mr", slow.port, "trafficPolicy: {connectionPool: {http: {http2MaxRequests: 2}}}")
    gw = gateway_factory(text, ports=(80,))
    results = concurrent_gets(gw, "mr.example.com", 6)
    statuses = sorted(r.status for r in results)
    overflowed = [r for r in results if r.status == 503]
    # at most 2 requests in flight: 6 at once → at least one refused at once (no connection limit applies)
    assert statuses.count(200) >= 2 and 1 <= len(overflowed) <= 4, statuses
    assert statuses.count(200) + len(overflowed) == 6, statuses
    for r in overflowed:
        assert r.headers.get("x-envoy-overloaded") == "true", r.headers
    # Envoy counts this overflow (max_requests) as active, not pending
    assert cluster_stat(gw, "mr", "upstream_rq_active_overflow") == len(overflowed)
    assert cluster_stat(gw, "mr", "upstream_rq_pending_overflow") == 0
    assert slow.count == statuses.count(200)


def test_http1_max_pending_requests_overflows_with_x_envoy_overloaded(backend_factory, gateway_factory):
    slow = backend_factory("slow", delay=1.0)
    text = gateway_yaml()
    text += service_yaml("mp", slow.port, """
        trafficPolicy:
          connectionPool:
            tcp: {maxConnections: 1}
            http: {http1MaxPendingRequests: 2}
    """)
    gw = gateway_factory(text, ports=(80,))
    results = concurrent_gets(gw, "mp.example.com", 6)
    statuses = sorted(r.status for r in results)
    overflowed = [r for r in results if r.status == 503]
    # one connection, one request on it, two queued: those three are served (one after the other),
    # and at least one of the other three is refused at once
    assert statuses.count(200) >= 3 and 1 <= len(overflowed) <= 3, statuses
    assert statuses.count(200) + len(overflowed) == 6, statuses
    for r in overflowed:
        assert r.headers.get("x-envoy-overloaded") == "true", r.headers
    assert cluster_stat(gw, "mp", "upstream_rq_pending_overflow") == len(overflowed)
    assert cluster_stat(gw, "mp", "upstream_rq_active_overflow") == 0


def test_h2_upgrade_policy_decides_the_upstream_protocol(backend_factory, gateway_factory):
    """What the backend receives first: the HTTP/2 connection preface, or an HTTP/1.1 request line.

    The backends are raw TCP servers (they record bytes; the gateway's answer to the client is
    a 503 then, which does not matter here). meshConfig.h2UpgradePolicy UPGRADE upgrades every
    HTTP port; a DestinationRule DO_NOT_UPGRADE keeps its host on HTTP/1.1."""
    mesh, dnu, dr_up = backend_factory.tcp("mesh"), backend_factory.tcp("dnu"), backend_factory.tcp("drup")
    text = OPERATOR_MESH_H2 + "---\n" + gateway_yaml()
    text += service_yaml("mesh", mesh.port)
    text += service_yaml("dnu", dnu.port, "trafficPolicy: {connectionPool: {http: {h2UpgradePolicy: DO_NOT_UPGRADE}}}")
    text += service_yaml("drup", dr_up.port, "trafficPolicy: {connectionPool: {http: {h2UpgradePolicy: UPGRADE}}}")
    gw = gateway_factory(text, ports=(80,))
    cl = clusters(gw)
    assert "http2_protocol_options" in protocol_options(cl[cluster_name("mesh")])["explicit_http_config"]
    assert "http2_protocol_options" in protocol_options(cl[cluster_name("drup")])["explicit_http_config"]
    assert protocol_options(cl[cluster_name("dnu")]) == {}  # HTTP/1.1, Envoy's default: the traffic below shows it

    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    for short, backend in (("mesh", mesh), ("dnu", dnu), ("drup", dr_up)):
        r = http_get(gw, 80, "/probe", host=f"{short}.example.com", timeout=10)
        assert r.status >= 500, (short, r)  # a byte echo is no HTTP server
        wait_until(lambda b=backend: len(b.received) >= len(preface), 5, message=f"{short}: backend saw nothing")
    assert mesh.received.startswith(preface), mesh.received[:40]
    assert dr_up.received.startswith(preface), dr_up.received[:40]
    assert dnu.received.startswith(b"GET /probe HTTP/1.1\r\n"), dnu.received[:40]
