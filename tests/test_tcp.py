"""TCP servers (and TLS-terminated TCP) through the stock Envoy, with real TCP/TLS clients.

Istio semantics: istio-semantics.md 1.3 and 3.4 (``buildGatewayNetworkFiltersFromTCPRoutes``,
``networkfilter.go``): the first VirtualService whose ``tcp[]`` entry applies (match on
``port``/``gateways``, or no match) wins; several destinations give weighted clusters; a
server without an applicable route gives no listener; DestinationRule
``connectionPool.tcp.idleTimeout`` becomes the tcp_proxy ``idle_timeout``.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import yaml

from harness import (
    LOCALHOST,
    http_get,
    port_is_open,
    run_envoygen,
    tcp_exchange,
    tls_exchange,
    tls_handshake,
    wait_until,
)

NS = "default"
CLUSTER = "outbound|31400||echo.default.svc.cluster.local"


def gateway(*servers: str, name: str = "tcp-gateway") -> str:
    body = "\n".join(servers)
    return f"""
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {{name: {name}, namespace: {NS}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
{body}
"""


TCP_SERVER = """\
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]"""

HTTP_SERVER = """\
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["web.example.com"]"""


def service_entry(name: str, port: int, target: int, protocol: str = "TCP") -> str:
    return f"""
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {NS}}}
spec:
  hosts: [{name}.{NS}.svc.cluster.local]
  ports: [{{number: {port}, name: {protocol.lower()}, protocol: {protocol}, targetPort: {target}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""


def tcp_vs(name: str, tcp: str, hosts: str = '["*"]', gateways: str = "[tcp-gateway]", created: str | None = None) -> str:
    ts = f", creationTimestamp: '{created}'" if created else ""
    return f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: {name}, namespace: {NS}{ts}}}
spec:
  hosts: {hosts}
  gateways: {gateways}
  tcp:
{tcp}
"""


def route_to(host: str, port: int = 31400, match: str | None = None) -> str:
    m = f"  - match: {match}\n    route:\n" if match else "  - route:\n"
    return m + f"    - destination: {{host: {host}, port: {{number: {port}}}}}"


def listeners_json(out_dir: Path) -> list[dict]:
    p = run_envoygen(["proxy-config", "listeners", str(out_dir), "-o", "json"])
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def clusters_json(out_dir: Path) -> list[dict]:
    p = run_envoygen(["proxy-config", "clusters", str(out_dir), "-o", "json"])
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def write_inputs(tmp_path: Path, *docs: str) -> Path:
    d = tmp_path / "input"
    d.mkdir()
    (d / "in.yaml").write_text("\n---\n".join(x.strip("\n") for x in docs) + "\n")
    return d


def bundle_listener(out_dir: Path, name: str) -> dict:
    boot = yaml.safe_load((out_dir / "envoy.yaml").read_text())
    for lst in boot["static_resources"]["listeners"]:
        if lst["name"] == name:
            return lst
    raise AssertionError(f"no listener {name} in {[l['name'] for l in boot['static_resources']['listeners']]}")


def tcp_proxy_of(chain: dict) -> dict:
    for f in chain["filters"]:
        if f["name"] == "envoy.filters.network.tcp_proxy":
            return f.get("typed_config") or f["typedConfig"]  # the bundle's YAML, or proxy-config's protobuf JSON
    raise AssertionError(f"no tcp_proxy in chain {chain.get('name')}")


def greeting_of(port: int) -> bytes:
    """Connect, read the backend's one-line greeting (the echo server speaks first)."""
    return tcp_exchange(port, read_until=b"\n", timeout=3)


def connection_refused_or_closed(port: int) -> bool:
    """True when the gateway does not carry bytes on ``port`` (refused, reset or EOF, no greeting)."""
    try:
        data = tcp_exchange(port, b"ping\n", read_until=b"\n", timeout=2)
    except OSError:
        return True
    return data == b""


# --------------------------------------------------------------------------
# plain TCP


def test_tcp_echo_through_gateway(backend_factory, gateway_factory):
    echo = backend_factory.tcp("echo", greeting=b"hello-from-echo\n")
    gw = gateway_factory(
        [gateway(TCP_SERVER), tcp_vs("echo", route_to("echo")), service_entry("echo", 31400, echo.port)],
        ports=(31400,),
    )
    port = gw.port(31400)
    data = tcp_exchange(port, b"ping-1\n", read_until=b"ping-1\n")
    assert data == b"hello-from-echo\nping-1\n"
    # a larger payload, several writes, half close: every byte comes back
    payload = bytes(range(256)) * 64
    back = tcp_exchange(port, payload)
    assert back == b"hello-from-echo\n" + payload
    assert echo.connections == 2
    assert echo.received == b"ping-1\n" + payload
    # the tcp_proxy stats carry the cluster name as stat_prefix (Istio: statPrefix = clusterName)
    stats = gw.stats("downstream_cx_total")
    assert stats.get(f"tcp.{CLUSTER}.downstream_cx_total") == 2, stats
    assert CLUSTER in gw.admin("clusters")
    # no SNI anywhere → no tls_inspector on the TCP listener
    dump = gw.admin("config_dump?resource=static_listeners")
    assert "tls_inspector" not in dump


def test_tcp_names_in_bundle(tmp_path):
    """Without a port map: listener 0.0.0.0_31400, cluster outbound|31400||<fqdn>, no tls_inspector."""
    inp = write_inputs(tmp_path, gateway(TCP_SERVER), tcp_vs("echo", route_to("echo")),
                       service_entry("echo", 31400, 9999))
    out = tmp_path / "out"
    p = run_envoygen(["render", "-f", str(inp), "-o", str(out)])
    assert p.returncode == 0, p.stderr
    lst = {l["name"]: l for l in listeners_json(out)}
    assert "0.0.0.0_31400" in lst, list(lst)
    l31400 = lst["0.0.0.0_31400"]
    # proxy-config -o json: protobuf JSON field names, as istioctl prints them
    assert l31400["address"]["socketAddress"]["portValue"] == 31400
    assert not l31400.get("listenerFilters"), "a plain TCP listener needs no tls_inspector"
    assert len(l31400["filterChains"]) == 1
    chain = l31400["filterChains"][0]
    assert "filterChainMatch" not in chain
    tp = tcp_proxy_of(chain)
    assert tp["cluster"] == CLUSTER
    assert tp["statPrefix"] == CLUSTER
    names = [c["name"] for c in clusters_json(out)]
    assert CLUSTER in names


def test_weighted_tcp_destinations_both_seen(backend_factory, gateway_factory):
    a = backend_factory.tcp("a", greeting=b"A\n")
    b = backend_factory.tcp("b", greeting=b"B\n")
    tcp = """\
  - route:
    - destination: {host: echo-a, port: {number: 31400}}
      weight: 50
    - destination: {host: echo-b, port: {number: 31400}}
      weight: 50"""
    gw = gateway_factory(
        [gateway(TCP_SERVER), tcp_vs("split", tcp), service_entry("echo-a", 31400, a.port),
         service_entry("echo-b", 31400, b.port)],
        ports=(31400,),
    )
    seen: dict[bytes, int] = {}
    for _ in range(60):  # bounded; P(one side unseen after 60) ~ 2^-59
        g = greeting_of(gw.port(31400))
        seen[g] = seen.get(g, 0) + 1
        if len(seen) >= 2 and sum(seen.values()) >= 10:
            break
    assert set(seen) == {b"A\n", b"B\n"}, seen
    # weighted clusters: Istio's stat_prefix is "<vs-name>.<vs-namespace>"
    dump = gw.admin("config_dump?resource=static_listeners")
    assert '"weighted_clusters"' in dump
    assert '"stat_prefix": "split.default"' in dump


def test_zero_weight_destination_gets_nothing(backend_factory, gateway_factory):
    a = backend_factory.tcp("a", greeting=b"A\n")
    b = backend_factory.tcp("b", greeting=b"B\n")
    tcp = """\
  - route:
    - destination: {host: echo-a, port: {number: 31400}}
      weight: 100
    - destination: {host: echo-b, port: {number: 31400}}
      weight: 0"""
    gw = gateway_factory(
        [gateway(TCP_SERVER), tcp_vs("split", tcp), service_entry("echo-a", 31400, a.port),
         service_entry("echo-b", 31400, b.port)],
        ports=(31400,),
    )
    got = {greeting_of(gw.port(31400)) for _ in range(8)}
    assert got == {b"A\n"}
    assert b.connections == 0
    # two route entries → Istio's weighted path (buildOutboundNetworkFiltersWithWeightedClusters): weight-0
    # entries are left out, but it stays weighted_clusters with stat_prefix "<vs>.<ns>"
    tp = tcp_proxy_of(bundle_listener(gw.bundle_dir, f"0.0.0.0_{gw.port(31400)}")["filter_chains"][0])
    assert tp["stat_prefix"] == "split.default", tp
    assert tp.get("weighted_clusters") == {"clusters": [{"name": "outbound|31400||echo-a.default.svc.cluster.local",
                                                         "weight": 100}]}, tp
    assert gw.stats("downstream_cx_total").get("tcp.split.default.downstream_cx_total") == 8


def test_tcp_match_port_other_than_server_gives_no_listener(backend_factory, gateway_factory):
    echo = backend_factory.tcp("echo", greeting=b"E\n")
    gw = gateway_factory(
        [gateway(TCP_SERVER), tcp_vs("echo", route_to("echo", match="[{port: 31401}]")),
         service_entry("echo", 31400, echo.port)],
        ports=(31400,),
        start=False,
    )
    r = gw.render()
    # the warning points at the server's port line of the Gateway (input/00.yaml line 7)
    assert "00.yaml:7: warning EG0212 " in r.stderr, r.stderr
    assert "[spec.servers[0].port]" in r.stderr
    # and as it is the gateway's only server, the bundle would serve nothing: an error, nothing written (issue 10)
    assert r.exit_code == 1, r.stderr
    assert "EG0212 gateway workload istio-system/istio-ingressgateway" in r.stderr, r.stderr
    assert not (r.out_dir / "envoy.yaml").exists()
    assert echo.connections == 0


def test_tcp_match_port_equal_to_server_applies_and_first_applicable_entry_wins(backend_factory, gateway_factory):
    a = backend_factory.tcp("a", greeting=b"A\n")
    b = backend_factory.tcp("b", greeting=b"B\n")
    c = backend_factory.tcp("c", greeting=b"C\n")
    tcp = "\n".join([
        route_to("echo-a", match="[{port: 9999}]"),              # does not apply to 31400
        route_to("echo-b", match="[{port: 31400}]"),             # applies: wins
        route_to("echo-c"),                                      # would apply, but comes later
    ])
    gw = gateway_factory(
        [gateway(TCP_SERVER), tcp_vs("echo", tcp), service_entry("echo-a", 31400, a.port),
         service_entry("echo-b", 31400, b.port), service_entry("echo-c", 31400, c.port)],
        ports=(31400,),
    )
    assert {greeting_of(gw.port(31400)) for _ in range(3)} == {b"B\n"}
    assert a.connections == 0 and c.connections == 0


def test_tcp_match_gateways_restricts(backend_factory, gateway_factory):
    """tcp[].match.gateways naming another Gateway does not apply to this one."""
    a = backend_factory.tcp("a", greeting=b"A\n")
    b = backend_factory.tcp("b", greeting=b"B\n")
    tcp = "\n".join([
        route_to("echo-a", match="[{gateways: [other-gateway]}]"),
        route_to("echo-b", match="[{gateways: [tcp-gateway]}]"),
    ])
    other = gateway("""\
  - port: {number: 31401, name: tcp-other, protocol: TCP}
    hosts: ["*"]""", name="other-gateway")
    gw = gateway_factory(
        [gateway(TCP_SERVER), other, tcp_vs("echo", tcp, gateways="[tcp-gateway, other-gateway]"),
         service_entry("echo-a", 31400, a.port), service_entry("echo-b", 31400, b.port)],
        ports=(31400, 31401),
    )
    assert greeting_of(gw.port(31400)) == b"B\n"
    # on other-gateway's port the first entry applies; destination port defaults stay explicit (31400)
    assert greeting_of(gw.port(31401)) == b"A\n"


def test_first_virtual_service_wins_by_creation_time(backend_factory, gateway_factory):
    a = backend_factory.tcp("a", greeting=b"A\n")
    b = backend_factory.tcp("b", greeting=b"B\n")
    gw = gateway_factory(
        [gateway(TCP_SERVER),
         # "a-vs" sorts first by name but was created later: "z-vs" wins (creation time first)
         tcp_vs("a-vs", route_to("echo-a"), created="2024-02-01T00:00:00Z"),
         tcp_vs("z-vs", route_to("echo-b"), created="2024-01-01T00:00:00Z"),
         service_entry("echo-a", 31400, a.port), service_entry("echo-b", 31400, b.port)],
        ports=(31400,),
    )
    assert {greeting_of(gw.port(31400)) for _ in range(3)} == {b"B\n"}
    assert a.connections == 0


def test_first_virtual_service_wins_by_name(backend_factory, gateway_factory):
    a = backend_factory.tcp("a", greeting=b"A\n")
    b = backend_factory.tcp("b", greeting=b"B\n")
    gw = gateway_factory(
        [gateway(TCP_SERVER),
         tcp_vs("zz-vs", route_to("echo-b")),
         tcp_vs("aa-vs", route_to("echo-a")),
         service_entry("echo-a", 31400, a.port), service_entry("echo-b", 31400, b.port)],
        ports=(31400,),
    )
    assert {greeting_of(gw.port(31400)) for _ in range(3)} == {b"A\n"}
    assert b.connections == 0


def test_vs_whose_hosts_do_not_match_server_is_ignored(backend_factory, gateway_factory):
    a = backend_factory.tcp("a", greeting=b"A\n")
    b = backend_factory.tcp("b", greeting=b"B\n")
    server = """\
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["tcp.example.com"]"""
    gw = gateway_factory(
        [gateway(server),
         tcp_vs("aa-vs", route_to("echo-a"), hosts='["other.example.org"]'),
         tcp_vs("bb-vs", route_to("echo-b"), hosts='["tcp.example.com"]'),
         service_entry("echo-a", 31400, a.port), service_entry("echo-b", 31400, b.port)],
        ports=(31400,),
    )
    assert greeting_of(gw.port(31400)) == b"B\n"
    assert a.connections == 0


def test_tcp_destination_port_defaults_to_server_port(backend_factory, gateway_factory):
    echo = backend_factory.tcp("echo", greeting=b"E\n")
    tcp = "  - route:\n    - destination: {host: echo}"
    gw = gateway_factory([gateway(TCP_SERVER), tcp_vs("echo", tcp), service_entry("echo", 31400, echo.port)],
                         ports=(31400,))
    assert greeting_of(gw.port(31400)) == b"E\n"
    assert CLUSTER in gw.admin("clusters")


# --------------------------------------------------------------------------
# render-time errors


def _render(gateway_factory, docs, ports=(31400,)):
    gw = gateway_factory(docs, ports=ports, start=False)
    return gw.render()


def test_tcp_route_without_route_is_eg0103(gateway_factory):
    tcp = "  - match: [{port: 31400}]"
    r = _render(gateway_factory, [gateway(TCP_SERVER), tcp_vs("echo", tcp), service_entry("echo", 31400, 9)])
    assert r.exit_code == 1, r.stderr
    assert "EG0103" in r.stderr
    assert "spec.tcp[0]" in r.stderr
    assert not (r.out_dir / "envoy.yaml").exists()


def test_tcp_and_http_servers_on_one_port_is_eg0206(gateway_factory):
    http_on_31400 = """\
  - port: {number: 31400, name: http, protocol: HTTP}
    hosts: ["web.example.com"]"""
    r = _render(gateway_factory, [gateway(TCP_SERVER, http_on_31400), tcp_vs("echo", route_to("echo")),
                                  service_entry("echo", 31400, 9)])
    assert r.exit_code == 1, r.stderr
    assert "EG0206" in r.stderr
    assert "spec.servers[1].port" in r.stderr


def test_http_then_tcp_on_one_port_is_eg0206(gateway_factory):
    http_on_31400 = """\
  - port: {number: 31400, name: http, protocol: HTTP}
    hosts: ["web.example.com"]"""
    r = _render(gateway_factory, [gateway(http_on_31400, TCP_SERVER), tcp_vs("echo", route_to("echo")),
                                  service_entry("echo", 31400, 9)])
    assert r.exit_code == 1, r.stderr
    assert "EG0206" in r.stderr
    assert "spec.servers[1].port" in r.stderr


# --------------------------------------------------------------------------
# HTTP and TCP on one gateway


def test_http_and_tcp_servers_on_different_ports(backend_factory, gateway_factory):
    web = backend_factory("web")
    echo = backend_factory.tcp("echo", greeting=b"E\n")
    http_vs = """
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: ["web.example.com"]
  gateways: [tcp-gateway]
  http:
  - route:
    - destination: {host: web, port: {number: 80}}
"""
    gw = gateway_factory(
        [gateway(HTTP_SERVER, TCP_SERVER), http_vs, tcp_vs("echo", route_to("echo")),
         service_entry("echo", 31400, echo.port), service_entry("web", 80, web.port, protocol="HTTP")],
        ports=(80, 31400),
    )
    status, headers, _ = http_get(gw, 80, "/x", host="web.example.com")
    assert status == 200
    assert headers["x-backend"] == "web"
    assert tcp_exchange(gw.port(31400), b"data\n", read_until=b"data\n") == b"E\ndata\n"
    # HTTP bytes sent to the TCP port are just echoed (no HCM there)
    assert tcp_exchange(gw.port(31400), b"GET / HTTP/1.1\r\n\r\n", read_until=b"\r\n\r\n") == b"E\nGET / HTTP/1.1\r\n\r\n"
    assert web.count == 1
    # the TCP VS does not leak into HTTP (its host "*" is not served by the HTTP server's vhost)
    status, _, _ = http_get(gw, 80, "/", host="other.example.com")
    assert status == 404


# --------------------------------------------------------------------------
# DestinationRule on a TCP cluster


def _dr(tcp_settings: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {{name: echo, namespace: {NS}}}
spec:
  host: echo.{NS}.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp: {tcp_settings}
"""


def test_max_connections_one_overflows_second_connection(backend_factory, gateway_factory):
    echo = backend_factory.tcp("echo", greeting=b"E\n")
    gw = gateway_factory(
        [gateway(TCP_SERVER), tcp_vs("echo", route_to("echo")), service_entry("echo", 31400, echo.port),
         _dr("{maxConnections: 1}")],
        ports=(31400,),
    )
    port = gw.port(31400)
    first = socket.create_connection((LOCALHOST, port), timeout=5)
    try:
        first.sendall(b"one\n")
        buf = b""
        for _ in range(50):  # bounded
            chunk = first.recv(100)
            if not chunk:
                break
            buf += chunk
            if buf.endswith(b"one\n"):
                break
        assert buf == b"E\none\n"
        # second concurrent connection: the circuit breaker (max_connections 1) refuses it
        assert connection_refused_or_closed(port)
        overflow = wait_until(
            lambda: {k: v for k, v in gw.stats("upstream_cx_overflow").items() if "echo" in k and v > 0},
            timeout=5,
        )
        assert any(k.startswith("cluster.outbound|31400||echo.default.svc.cluster.local") for k in overflow), overflow
        assert echo.connections == 1
        # the first connection is unaffected
        first.sendall(b"still\n")
        buf = b""
        for _ in range(50):
            chunk = first.recv(100)
            if not chunk:
                break
            buf += chunk
            if buf.endswith(b"still\n"):
                break
        assert buf == b"still\n"
    finally:
        first.close()
    # once the first is gone, a new one is admitted
    def admitted() -> bool:
        try:
            return tcp_exchange(port, b"again\n", read_until=b"again\n", timeout=2) == b"E\nagain\n"
        except OSError:
            return False

    wait_until(admitted, timeout=5)


def test_idle_timeout_goes_on_tcp_proxy(backend_factory, gateway_factory):
    """Istio: networkfilter.go sets TcpProxy.IdleTimeout from DR connectionPool.tcp.idleTimeout."""
    echo = backend_factory.tcp("echo", greeting=b"E\n")
    gw = gateway_factory(
        [gateway(TCP_SERVER), tcp_vs("echo", route_to("echo")), service_entry("echo", 31400, echo.port),
         _dr("{idleTimeout: 1s}")],
        ports=(31400,),
    )
    chain = bundle_listener(gw.bundle_dir, f"0.0.0.0_{gw.port(31400)}")["filter_chains"][0]
    tp = tcp_proxy_of(chain)
    assert tp.get("idle_timeout") in ("1s", "1.000s"), tp
    # and a real idle connection is closed by the gateway after ~1s
    with socket.create_connection((LOCALHOST, gw.port(31400)), timeout=5) as s:
        assert s.recv(10) == b"E\n"
        t0 = time.monotonic()
        s.settimeout(4)
        try:
            data = s.recv(10)
        except socket.timeout:
            data = None
        except ConnectionResetError:
            data = b""
        assert data == b"", "the gateway kept an idle connection open past idle_timeout 1s"
        assert time.monotonic() - t0 < 3.5


# --------------------------------------------------------------------------
# TLS-terminated TCP (protocol TLS, mode SIMPLE / MUTUAL) + VS tcp: routes


TLS_SERVER = """\
  - port: {{number: 443, name: tls-echo, protocol: TLS}}
    hosts: ["echo.example.com"]
    tls: {{mode: {mode}, credentialName: echo-cred}}"""


@pytest.fixture
def echo_creds(tmp_path, cert_authority):
    creds = tmp_path / "creds"
    cert_authority.issue("echo.example.com").write(creds / "echo-cred")
    ca = cert_authority.write_ca(tmp_path / "ca.pem")
    client = cert_authority.issue("client.example.com", client=True)
    cdir = tmp_path / "client"
    client.write(cdir, ca=False)
    return creds, ca, cdir / "tls.crt", cdir / "tls.key"


def test_tls_simple_terminates_then_tcp_to_plain_backend(backend_factory, gateway_factory, echo_creds):
    creds, ca, _, _ = echo_creds
    echo = backend_factory.tcp("echo", greeting=b"E\n")
    gw = gateway_factory(
        [gateway(TLS_SERVER.format(mode="SIMPLE")),
         tcp_vs("echo", route_to("echo", port=31400), hosts='["echo.example.com"]'),
         service_entry("echo", 31400, echo.port)],
        ports=(443,),
        args=["--credentials-dir", str(creds)],
    )
    port = gw.port(443)
    hs = tls_handshake(LOCALHOST, port, "echo.example.com", ca=ca)
    assert hs.ok, hs.error
    assert hs.subject_cn == "echo.example.com"  # the gateway's certificate, not a backend's
    assert tls_exchange(port, "echo.example.com", b"secret\n", ca=ca, read_until=b"secret\n") == b"E\nsecret\n"
    # the backend sees plaintext (TLS ended at the gateway)
    assert b"secret\n" in echo.received
    # SNI of another host: no chain (server_names = server hosts)
    other = tls_handshake(LOCALHOST, port, "other.example.com", verify=False)
    assert not other.ok
    lst = bundle_listener(gw.bundle_dir, f"0.0.0.0_{port}")
    assert [f["name"] for f in lst.get("listener_filters", [])] == ["envoy.filters.listener.tls_inspector"]
    chain = lst["filter_chains"][0]
    assert chain["filter_chain_match"]["server_names"] == ["echo.example.com"]
    assert tcp_proxy_of(chain)["cluster"] == CLUSTER


def test_tls_mutual_requires_client_certificate(backend_factory, gateway_factory, echo_creds):
    creds, ca, client_cert, client_key = echo_creds
    echo = backend_factory.tcp("echo", greeting=b"E\n")
    gw = gateway_factory(
        [gateway(TLS_SERVER.format(mode="MUTUAL")),
         tcp_vs("echo", route_to("echo"), hosts='["echo.example.com"]'),
         service_entry("echo", 31400, echo.port)],
        ports=(443,),
        args=["--credentials-dir", str(creds)],
    )
    port = gw.port(443)
    with pytest.raises((OSError, ConnectionError)):
        data = tls_exchange(port, "echo.example.com", b"nocert\n", ca=ca, read_until=b"nocert\n", timeout=3)
        # TLS 1.3: the rejection can arrive as EOF after the handshake
        if data == b"":
            raise ConnectionError("closed")
    assert b"nocert" not in echo.received
    got = tls_exchange(port, "echo.example.com", b"withcert\n", ca=ca, client_cert=client_cert,
                       client_key=client_key, read_until=b"withcert\n")
    assert got == b"E\nwithcert\n"


def test_tls_simple_server_ignores_vs_tls_routes(gateway_factory, echo_creds):
    """Istio 3.4: on a TLS SIMPLE server only tcp: routes count; a VS with only tls: routes gives no listener."""
    creds, _, _, _ = echo_creds
    vs = """
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: ["echo.example.com"]
  gateways: [tcp-gateway]
  tls:
  - match: [{sniHosts: [echo.example.com]}]
    route:
    - destination: {host: echo, port: {number: 31400}}
"""
    gw = gateway_factory([gateway(TLS_SERVER.format(mode="SIMPLE")), vs, service_entry("echo", 31400, 9)],
                         ports=(443,), args=["--credentials-dir", str(creds)], start=False)
    r = gw.render()
    assert "warning EG0212 no listener for 0.0.0.0_" in r.stderr, r.stderr
    assert r.exit_code == 1, r.stderr  # its only server: the gateway would serve nothing (issue 10)
    assert not (r.out_dir / "envoy.yaml").exists()


def test_tls_server_repeating_a_host_is_dropped_whole(backend_factory, gateway_factory, cert_authority, tmp_path):
    """Istio mergeGateways: a TLS server whose hosts repeat one already used on the port (same bind) is
    skipped entirely (CheckDuplicates → "skipping server on gateway ..., duplicate host names"), so
    its other hosts are not served either."""
    creds = tmp_path / "creds"
    cert_authority.issue("echo.example.com").write(creds / "cred-a")
    cert_authority.issue("echo.example.com", sans=["echo.example.com", "other.example.com"]).write(creds / "cred-b")
    ca = cert_authority.write_ca(tmp_path / "ca.pem")
    a = backend_factory.tcp("a", greeting=b"A\n")
    b = backend_factory.tcp("b", greeting=b"B\n")
    gw_a = f"""
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {{name: gw-a, namespace: {NS}, creationTimestamp: '2024-01-01T00:00:00Z'}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: tls-a, protocol: TLS}}
    hosts: ["echo.example.com"]
    tls: {{mode: SIMPLE, credentialName: cred-a}}
"""
    gw_b = gw_a.replace("gw-a", "gw-b").replace("2024-01-01", "2024-02-01").replace("tls-a", "tls-b").replace(
        "cred-a", "cred-b").replace('["echo.example.com"]', '["echo.example.com", "other.example.com"]')
    gw = gateway_factory(
        [gw_a, gw_b,
         tcp_vs("vs-a", route_to("echo-a"), hosts='["echo.example.com"]', gateways="[gw-a]"),
         tcp_vs("vs-b", route_to("echo-b"), hosts='["other.example.com"]', gateways="[gw-b]"),
         service_entry("echo-a", 31400, a.port), service_entry("echo-b", 31400, b.port)],
        ports=(443,),
        args=["--credentials-dir", str(creds)],
    )
    port = gw.port(443)
    assert tls_exchange(port, "echo.example.com", b"x\n", ca=ca, read_until=b"x\n") == b"A\nx\n"
    other = tls_handshake(LOCALHOST, port, "other.example.com", ca=ca)
    assert not other.ok, f"gw-b's server should be dropped whole, but SNI other.example.com got {other.subject_cn}"
    assert b.connections == 0
    assert "EG0206" in gw.render_result.stderr


# --------------------------------------------------------------------------
# samples/tcp-echo

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "tcp-echo"


def test_tcp_echo_sample(backend_factory, gateway_factory):
    echo = backend_factory.tcp("tcp-echo", greeting=b"tcp-echo ready\n")
    local = """
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: tcp-echo-local, namespace: tcp-echo}
spec:
  hosts: [tcp-echo.tcp-echo.svc.cluster.local]
  ports: [{number: 9000, name: tcp, protocol: TCP, targetPort: %d}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
""" % echo.port
    args_file = SAMPLE / "render.args"
    args = args_file.read_text().split() if args_file.exists() else []
    gw = gateway_factory([SAMPLE, local], ports=(31400,), args=args)
    assert tcp_exchange(gw.port(31400), b"hello\n", read_until=b"hello\n") == b"tcp-echo ready\nhello\n"
    assert echo.received == b"hello\n"
    cluster = "outbound|9000||tcp-echo.tcp-echo.svc.cluster.local"
    chain = bundle_listener(gw.bundle_dir, f"0.0.0.0_{gw.port(31400)}")["filter_chains"][0]
    tp = tcp_proxy_of(chain)
    assert tp["cluster"] == cluster
    assert tp.get("idle_timeout") == "1800s"  # DR connectionPool.tcp.idleTimeout: 30m
    assert f"{cluster}::default_priority::max_connections::100" in gw.admin("clusters")


# --------------------------------------------------------------------------
# more DestinationRule → tcp_proxy (Istio networkfilter.go buildOutboundNetworkFiltersWithSingleDestination)


def test_max_connection_duration_goes_on_tcp_proxy(backend_factory, gateway_factory):
    """DR connectionPool.tcp.maxConnectionDuration → TcpProxy.max_downstream_connection_duration:
    even a busy connection is closed after it."""
    echo = backend_factory.tcp("echo", greeting=b"E\n")
    gw = gateway_factory(
        [gateway(TCP_SERVER), tcp_vs("echo", route_to("echo")), service_entry("echo", 31400, echo.port),
         _dr("{maxConnectionDuration: 1s}")],
        ports=(31400,),
    )
    tp = tcp_proxy_of(bundle_listener(gw.bundle_dir, f"0.0.0.0_{gw.port(31400)}")["filter_chains"][0])
    assert tp.get("max_downstream_connection_duration") in ("1s", "1.000s"), tp
    closed = False
    with socket.create_connection((LOCALHOST, gw.port(31400)), timeout=5) as s:
        s.settimeout(1)
        assert s.recv(10) == b"E\n"
        t0 = time.monotonic()
        for i in range(20):  # bounded: ~4 s of traffic, one line every 0.2 s
            try:
                s.sendall(b"tick\n")
                data = s.recv(100)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            except socket.timeout:
                data = b"?"
            if data == b"":
                closed = True
                break
            time.sleep(0.2)
        assert closed, "a busy connection outlived maxConnectionDuration 1s"
        assert time.monotonic() - t0 < 3.5


def test_tcp_proxy_idle_timeout_comes_from_top_level_policy(tmp_path):
    """Istio reads destinationRule.GetTrafficPolicy().GetConnectionPool().GetTcp().GetIdleTimeout() for the
    tcp_proxy: the top-level policy, regardless of portLevelSettings (which only shape the cluster)."""
    dr = f"""
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {{name: echo, namespace: {NS}}}
spec:
  host: echo.{NS}.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp: {{idleTimeout: 7s}}
    portLevelSettings:
    - port: {{number: 31400}}
      connectionPool:
        tcp: {{maxConnections: 10}}
"""
    inp = write_inputs(tmp_path, gateway(TCP_SERVER), tcp_vs("echo", route_to("echo")),
                       service_entry("echo", 31400, 9999), dr)
    out = tmp_path / "out"
    p = run_envoygen(["render", "-f", str(inp), "-o", str(out)])
    assert p.returncode == 0, p.stderr
    tp = tcp_proxy_of(bundle_listener(out, "0.0.0.0_31400")["filter_chains"][0])
    assert tp.get("idle_timeout") == "7s", tp
    cl = {c["name"]: c for c in clusters_json(out)}[CLUSTER]
    assert cl["circuitBreakers"]["thresholds"][0]["maxConnections"] == 10


def test_consistent_hash_source_ip_pins_tcp_connections(backend_factory, gateway_factory):
    """DR loadBalancer.consistentHash.useSourceIp → tcp_proxy hash_policy source_ip (Istio maybeSetHashPolicy):
    every connection from 127.0.0.1 lands on the same endpoint."""
    a = backend_factory.tcp("a", greeting=b"A\n")
    b = backend_factory.tcp("b", greeting=b"B\n")
    se = f"""
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: echo, namespace: {NS}}}
spec:
  hosts: [echo.{NS}.svc.cluster.local]
  ports: [{{number: 31400, name: tcp, protocol: TCP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{tcp: {a.port}}}}}
  - {{address: 127.0.0.1, ports: {{tcp: {b.port}}}}}
"""
    dr = f"""
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {{name: echo, namespace: {NS}}}
spec:
  host: echo.{NS}.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      consistentHash: {{useSourceIp: true}}
"""
    gw = gateway_factory([gateway(TCP_SERVER), tcp_vs("echo", route_to("echo")), se, dr], ports=(31400,))
    tp = tcp_proxy_of(bundle_listener(gw.bundle_dir, f"0.0.0.0_{gw.port(31400)}")["filter_chains"][0])
    assert tp.get("hash_policy") == [{"source_ip": {}}], tp
    seen = {greeting_of(gw.port(31400)) for _ in range(16)}
    assert len(seen) == 1, f"source-IP hashing should pin one endpoint, saw {seen}"


# --------------------------------------------------------------------------
# hosts, namespaces, ports


def test_destination_without_port_uses_the_single_service_port(backend_factory, gateway_factory):
    """route.GetDestinationCluster: no destination port and a single-port service → that port (9000), not 31400."""
    echo = backend_factory.tcp("echo", greeting=b"E\n")
    tcp = "  - route:\n    - destination: {host: echo}"
    gw = gateway_factory([gateway(TCP_SERVER), tcp_vs("echo", tcp), service_entry("echo", 9000, echo.port)],
                         ports=(31400,))
    assert greeting_of(gw.port(31400)) == b"E\n"
    assert "outbound|9000||echo.default.svc.cluster.local" in gw.admin("clusters")


def test_server_namespace_filter_admits_only_that_namespace(backend_factory, gateway_factory):
    """Server host "prod/*" admits VirtualServices of namespace prod only (pickMatchingGatewayHosts)."""
    a = backend_factory.tcp("a", greeting=b"A\n")
    b = backend_factory.tcp("b", greeting=b"B\n")
    server = """\
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["prod/*"]"""
    prod_vs = """
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: zz-prod, namespace: prod}
spec:
  hosts: ["*"]
  gateways: [default/tcp-gateway]
  tcp:
  - route:
    - destination: {host: echo-b.default.svc.cluster.local, port: {number: 31400}}
"""
    gw = gateway_factory(
        [gateway(server), tcp_vs("aa-default", route_to("echo-a")), prod_vs,
         service_entry("echo-a", 31400, a.port), service_entry("echo-b", 31400, b.port)],
        ports=(31400,),
    )
    assert {greeting_of(gw.port(31400)) for _ in range(3)} == {b"B\n"}
    assert a.connections == 0


def test_two_tcp_servers_on_one_port_is_eg0206(gateway_factory):
    """Istio mergeGateways: two plain TCP servers cannot merge (no route name); the second is dropped."""
    second = """\
  - port: {number: 31400, name: tcp-2, protocol: TCP}
    hosts: ["*"]"""
    r = _render(gateway_factory, [gateway(TCP_SERVER, second), tcp_vs("echo", route_to("echo")),
                                  service_entry("echo", 31400, 9)])
    assert "EG0206" in r.stderr, r.stderr
    assert "spec.servers[1].port" in r.stderr


def test_tls_terminated_tcp_with_wildcard_host_has_no_sni_match(backend_factory, gateway_factory, echo_creds):
    creds, ca, _, _ = echo_creds
    echo = backend_factory.tcp("echo", greeting=b"E\n")
    server = """\
  - port: {number: 443, name: tls-echo, protocol: TLS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: echo-cred}"""
    gw = gateway_factory(
        [gateway(server), tcp_vs("echo", route_to("echo")), service_entry("echo", 31400, echo.port)],
        ports=(443,),
        args=["--credentials-dir", str(creds)],
    )
    port = gw.port(443)
    # any SNI, and no SNI at all, reach the single chain
    assert tls_exchange(port, "echo.example.com", b"a\n", ca=ca, read_until=b"a\n") == b"E\na\n"
    assert tls_exchange(port, None, b"b\n", verify=False, read_until=b"b\n") == b"E\nb\n"
    lst = bundle_listener(gw.bundle_dir, f"0.0.0.0_{port}")
    assert "filter_chain_match" not in lst["filter_chains"][0]
    assert not lst.get("listener_filters"), "no SNI/ALPN match → no tls_inspector (Istio buildGatewayListener)"


def test_access_log_on_tcp_proxy(backend_factory, gateway_factory, tmp_path):
    """--access-log: Istio attaches the logger to tcp_proxy, so a TCP connection is logged with its cluster,
    once: Istio's listener-level logger only logs NR (no filter chain) connections
    (accesslog.go addAccessLogFilter → ResponseFlagFilter ["NR"])."""
    echo = backend_factory.tcp("echo", greeting=b"E\n")
    log = tmp_path / "access.log"
    gw = gateway_factory(
        [gateway(TCP_SERVER), tcp_vs("echo", route_to("echo")), service_entry("echo", 31400, echo.port)],
        ports=(31400,),
        args=["--access-log", str(log)],
    )
    client_ports = []
    for i in range(2):
        with socket.create_connection((LOCALHOST, gw.port(31400)), timeout=5) as s:
            client_ports.append(s.getsockname()[1])
            s.sendall(b"logme\n")
            buf = b""
            for _ in range(20):
                chunk = s.recv(100)
                if not chunk:
                    break
                buf += chunk
                if buf.endswith(b"logme\n"):
                    break
            assert buf == b"E\nlogme\n"

    def lines_of(port: int) -> list[str]:
        text = log.read_text() if log.exists() else ""
        return [l for l in text.splitlines() if f" 127.0.0.1:{port} " in l]

    # Envoy flushes access-log files every 10 s (--file-flush-interval-msec default) or on a full buffer.
    # Each connection is logged when Envoy closes it, which is when the backend closes its side, on whichever
    # worker owns it: the two connections' lines can arrive in either order, so wait for both. A duplicate
    # (listener-level) line would be written by the same worker at the same close, so it cannot lag behind.
    wait_until(lambda: all(lines_of(p) for p in client_ports), timeout=15)
    for port in client_ports:
        lines = lines_of(port)
        assert len(lines) == 1, "\n".join(lines)
        assert f" {CLUSTER} " in lines[0], lines[0]


def test_tls_settings_on_tcp_server_and_tls_server_without_tls_are_eg0106(gateway_factory):
    """validation.go validateServer: "server cannot have TLS settings for non HTTPS/TLS ports" and
    "server must have TLS settings for HTTPS/TLS protocols"."""
    tcp_with_tls = """\
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: x}"""
    r = _render(gateway_factory, [gateway(tcp_with_tls), tcp_vs("echo", route_to("echo")), service_entry("echo", 31400, 9)])
    assert r.exit_code == 1, r.stderr
    assert "EG0106" in r.stderr and "spec.servers[0].tls" in r.stderr
    tls_without_tls = """\
  - port: {number: 31400, name: tls, protocol: TLS}
    hosts: ["*"]"""
    r = _render(gateway_factory, [gateway(tls_without_tls), tcp_vs("echo", route_to("echo")), service_entry("echo", 31400, 9)])
    assert r.exit_code == 1, r.stderr
    assert "EG0106" in r.stderr and "spec.servers[0].tls" in r.stderr


def test_tls_optional_mutual_admits_clients_without_certificate(backend_factory, gateway_factory, echo_creds):
    creds, ca, client_cert, client_key = echo_creds
    echo = backend_factory.tcp("echo", greeting=b"E\n")
    gw = gateway_factory(
        [gateway(TLS_SERVER.format(mode="OPTIONAL_MUTUAL")),
         tcp_vs("echo", route_to("echo"), hosts='["echo.example.com"]'),
         service_entry("echo", 31400, echo.port)],
        ports=(443,),
        args=["--credentials-dir", str(creds)],
    )
    port = gw.port(443)
    assert tls_exchange(port, "echo.example.com", b"anon\n", ca=ca, read_until=b"anon\n") == b"E\nanon\n"
    assert tls_exchange(port, "echo.example.com", b"cert\n", ca=ca, client_cert=client_cert, client_key=client_key,
                        read_until=b"cert\n") == b"E\ncert\n"


def test_mongo_server_gets_mongo_proxy_before_tcp_proxy(backend_factory, gateway_factory):
    """networkfilter.go buildNetworkFiltersStack: protocol MONGO (server port protocol) with
    PILOT_ENABLE_MONGO_FILTER (default true) → envoy.filters.network.mongo_proxy, then tcp_proxy."""
    echo = backend_factory.tcp("echo", greeting=b"E\n")
    server = """\
  - port: {number: 31400, name: mongo, protocol: MONGO}
    hosts: ["*"]"""
    gw = gateway_factory([gateway(server), tcp_vs("echo", route_to("echo")), service_entry("echo", 31400, echo.port)],
                         ports=(31400,))
    assert greeting_of(gw.port(31400)) == b"E\n"  # bytes still flow
    chain = bundle_listener(gw.bundle_dir, f"0.0.0.0_{gw.port(31400)}")["filter_chains"][0]
    assert [f["name"] for f in chain["filters"]] == ["envoy.filters.network.mongo_proxy",
                                                      "envoy.filters.network.tcp_proxy"]
    assert chain["filters"][0]["typed_config"]["stat_prefix"] == CLUSTER
    assert gw.stats(r"^mongo\."), "mongo_proxy stats missing"


def test_tls_terminated_tcp_offers_h2_and_http11_alpn(backend_factory, gateway_factory, echo_creds):
    """listener.go BuildListenerTLSContext: ALPN [h2, http/1.1] also on TLS-protocol (TCP) termination."""
    creds, ca, _, _ = echo_creds
    echo = backend_factory.tcp("echo", greeting=b"E\n")
    gw = gateway_factory(
        [gateway(TLS_SERVER.format(mode="SIMPLE")),
         tcp_vs("echo", route_to("echo"), hosts='["echo.example.com"]'), service_entry("echo", 31400, echo.port)],
        ports=(443,),
        args=["--credentials-dir", str(creds)],
    )
    hs = tls_handshake(LOCALHOST, gw.port(443), "echo.example.com", ca=ca, alpn=["h2", "http/1.1"])
    assert hs.ok and hs.alpn == "h2", hs
    hs = tls_handshake(LOCALHOST, gw.port(443), "echo.example.com", ca=ca, alpn=["http/1.1"])
    assert hs.ok and hs.alpn == "http/1.1", hs


def test_tcp_servers_with_different_binds_are_separate_listeners(tmp_path):
    """mergeGateways: TCP servers on one port but different binds do not conflict; listener name <bind>_<port>."""
    gw_a = gateway("""\
  - port: {number: 31400, name: tcp, protocol: TCP}
    bind: 127.0.0.1
    hosts: ["*"]""", name="gw-a")
    gw_b = gateway("""\
  - port: {number: 31400, name: tcp, protocol: TCP}
    bind: 127.0.0.2
    hosts: ["*"]""", name="gw-b")
    inp = write_inputs(tmp_path, gw_a, gw_b,
                       tcp_vs("vs-a", route_to("echo-a"), gateways="[gw-a]"),
                       tcp_vs("vs-b", route_to("echo-b"), gateways="[gw-b]"),
                       service_entry("echo-a", 31400, 9998), service_entry("echo-b", 31400, 9999))
    out = tmp_path / "out"
    p = run_envoygen(["render", "-f", str(inp), "-o", str(out)])
    assert p.returncode == 0, p.stderr
    assert "EG0206" not in p.stderr
    lst = {l["name"]: l for l in listeners_json(out)}
    assert tcp_proxy_of(lst["127.0.0.1_31400"]["filterChains"][0])["cluster"] == "outbound|31400||echo-a.default.svc.cluster.local"
    assert tcp_proxy_of(lst["127.0.0.2_31400"]["filterChains"][0])["cluster"] == "outbound|31400||echo-b.default.svc.cluster.local"
    assert lst["127.0.0.1_31400"]["address"]["socketAddress"]["address"] == "127.0.0.1"


def test_tcp_route_to_subset(backend_factory, gateway_factory):
    """The Istio tcp-echo traffic-shifting shape: DR subsets by endpoint label, tcp route weights per subset."""
    v1 = backend_factory.tcp("v1", greeting=b"one\n")
    v2 = backend_factory.tcp("v2", greeting=b"two\n")
    se = f"""
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: echo, namespace: {NS}}}
spec:
  hosts: [echo.{NS}.svc.cluster.local]
  ports: [{{number: 9000, name: tcp, protocol: TCP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{tcp: {v1.port}}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{tcp: {v2.port}}}, labels: {{version: v2}}}}
"""
    dr = f"""
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {{name: echo, namespace: {NS}}}
spec:
  host: echo
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
"""
    tcp = """\
  - route:
    - destination: {host: echo, port: {number: 9000}, subset: v1}
      weight: 0
    - destination: {host: echo, port: {number: 9000}, subset: v2}
      weight: 100"""
    gw = gateway_factory([gateway(TCP_SERVER), tcp_vs("echo", tcp), se, dr], ports=(31400,))
    assert {greeting_of(gw.port(31400)) for _ in range(6)} == {b"two\n"}
    assert v1.connections == 0
    clusters = gw.admin("clusters")
    assert "outbound|9000|v2|echo.default.svc.cluster.local" in clusters
    assert "outbound|9000|v1|echo.default.svc.cluster.local" in clusters


def test_two_tls_servers_on_443_each_with_its_certificate_and_backend(backend_factory, gateway_factory,
                                                                       cert_authority, tmp_path):
    creds = tmp_path / "creds"
    cert_authority.issue("a.example.com").write(creds / "cred-a")
    cert_authority.issue("b.example.com").write(creds / "cred-b")
    ca = cert_authority.write_ca(tmp_path / "ca.pem")
    a = backend_factory.tcp("a", greeting=b"A\n")
    b = backend_factory.tcp("b", greeting=b"B\n")
    servers = gateway("""\
  - port: {number: 443, name: tls-a, protocol: TLS}
    hosts: ["a.example.com"]
    tls: {mode: SIMPLE, credentialName: cred-a}
  - port: {number: 443, name: tls-b, protocol: TLS}
    hosts: ["b.example.com"]
    tls: {mode: SIMPLE, credentialName: cred-b}""")
    gw = gateway_factory(
        [servers,
         tcp_vs("vs-a", route_to("echo-a"), hosts='["a.example.com"]'),
         tcp_vs("vs-b", route_to("echo-b"), hosts='["b.example.com"]'),
         service_entry("echo-a", 31400, a.port), service_entry("echo-b", 31400, b.port)],
        ports=(443,),
        args=["--credentials-dir", str(creds)],
    )
    port = gw.port(443)
    for name, greet in (("a", b"A\n"), ("b", b"B\n")):
        host = f"{name}.example.com"
        hs = tls_handshake(LOCALHOST, port, host, ca=ca)
        assert hs.ok and hs.subject_cn == host
        assert tls_exchange(port, host, b"x\n", ca=ca, read_until=b"x\n") == greet + b"x\n"
    assert not tls_handshake(LOCALHOST, port, "c.example.com", verify=False).ok


def test_tcp_in_tls_out_origination(backend_factory, gateway_factory, cert_authority, tmp_path):
    """Plain TCP in, DR tls SIMPLE to the upstream: the gateway originates TLS (with the DR sni) to a TLS backend."""
    d = cert_authority.issue("secure.example.com").write(tmp_path / "secure", ca=False)
    ca = cert_authority.write_ca(tmp_path / "ca.pem")
    secure = backend_factory.tls("secure", cert=d / "tls.crt", key=d / "tls.key")
    dr = f"""
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {{name: echo, namespace: {NS}}}
spec:
  host: echo.{NS}.svc.cluster.local
  trafficPolicy:
    tls: {{mode: SIMPLE, caCertificates: {ca}, sni: secure.example.com}}
"""
    gw = gateway_factory([gateway(TCP_SERVER), tcp_vs("echo", route_to("echo")), service_entry("echo", 31400, secure.port),
                          dr], ports=(31400,))
    assert tcp_exchange(gw.port(31400), b"hello\n", read_until=b"\n") == b"secure\n"
    ok = [h for h in secure.handshakes if h["error"] is None]
    assert ok and ok[-1]["sni"] == "secure.example.com"


def test_vs_host_wildcards_match_the_server_both_ways(backend_factory, gateway_factory):
    """pickMatchingGatewayHosts uses host.Name.Matches, wildcard-aware in both directions."""
    a = backend_factory.tcp("a", greeting=b"A\n")
    b = backend_factory.tcp("b", greeting=b"B\n")
    gw = gateway_factory(
        [gateway("""\
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["tcp.example.com"]
  - port: {number: 31401, name: tcp-wild, protocol: TCP}
    hosts: ["*.example.org"]"""),
         tcp_vs("a-vs", route_to("echo-a", match="[{port: 31400}]"), hosts='["*.example.com"]'),
         tcp_vs("b-vs", route_to("echo-b", match="[{port: 31401}]"), hosts='["db.example.org"]'),
         service_entry("echo-a", 31400, a.port), service_entry("echo-b", 31400, b.port)],
        ports=(31400, 31401),
    )
    assert greeting_of(gw.port(31400)) == b"A\n"
    assert greeting_of(gw.port(31401)) == b"B\n"
