"""Uneven weights on VirtualService ``tcp:`` and ``tls:`` routes (PASSTHROUGH with sniHosts).

Istio (``networkfilter.go`` ``buildOutboundNetworkFiltersWithWeightedClusters``): several
destinations give a tcp_proxy ``weighted_clusters`` with one entry per destination, in
order, each carrying its own ``weight``. Two checks per route:

* Envoy's own config_dump (not the YAML text): cluster name ↔ weight, exactly;
* real traffic, bounded: N connections, each backend's share within a tolerance of its
  weight. The tolerance (±0.12) is more than 4 standard deviations for N=300, and every
  wrong assignment (swapped, equalised, all to one) is at least 0.2 away.
"""

from __future__ import annotations

import concurrent.futures
from collections import Counter

import pytest

from harness import tcp_exchange, tls_exchange

NS = "default"
N = 300
TOLERANCE = 0.12


def fqdn(short: str) -> str:
    return f"{short}.{NS}.svc.cluster.local"


def service_entry(name: str, number: int, target: int, protocol: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {NS}}}
spec:
  hosts: [{fqdn(name)}]
  ports: [{{number: {number}, name: {protocol.lower()}, protocol: {protocol}, targetPort: {target}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""


def route(dests: list[tuple[str, int]], port: int, indent: str = "    ") -> str:
    return "\n".join(
        f"{indent}- destination: {{host: {h}, port: {{number: {port}}}}}\n{indent}  weight: {w}" for h, w in dests
    )


def tcp_proxies(gw) -> dict[int, dict]:  # noqa: ANN001
    """Listener port → {server_names tuple → tcp_proxy typed_config}, from Envoy's config_dump."""
    out: dict[int, dict] = {}
    for c in gw.config_dump("static_listeners")["configs"]:
        lst = c["listener"]
        port = lst["address"]["socket_address"]["port_value"]
        for chain in lst.get("filter_chains", []):
            names = tuple(chain.get("filter_chain_match", {}).get("server_names", []))
            for f in chain["filters"]:
                if f["name"] == "envoy.filters.network.tcp_proxy":
                    out.setdefault(port, {})[names] = f["typed_config"]
    return out


def spread(fn, n: int = N) -> Counter:  # noqa: ANN001
    """Run ``fn()`` n times (8 at a time, each bounded by its own timeout); count the results."""
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: fn(), range(n), timeout=120))
    return Counter(results)


def assert_shares(counts: Counter, want: dict, n: int = N) -> None:
    assert sum(counts.values()) == n, counts
    assert set(counts) <= set(want), f"unexpected answers: {counts}"
    total = sum(want.values())
    for key, weight in want.items():
        share = counts.get(key, 0) / n
        assert abs(share - weight / total) <= TOLERANCE, (
            f"{key!r}: {counts.get(key, 0)}/{n} = {share:.2f}, weight {weight}/{total}; all: {dict(counts)}")


# --------------------------------------------------------------------------
# tcp:


def test_tcp_uneven_weights(backend_factory, gateway_factory):
    a = backend_factory.tcp("a", greeting=b"A\n")
    b = backend_factory.tcp("b", greeting=b"B\n")
    gateway = f"""
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {{name: tcp-gateway, namespace: {NS}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 31400, name: tcp-a, protocol: TCP}}
    hosts: ["*"]
  - port: {{number: 31401, name: tcp-b, protocol: TCP}}
    hosts: ["*"]
"""
    vs = f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: split, namespace: {NS}}}
spec:
  hosts: ["*"]
  gateways: [tcp-gateway]
  tcp:
  - match: [{{port: 31400}}]
    route:
{route([("echo-a", 80), ("echo-b", 20)], 9000)}
  - match: [{{port: 31401}}]
    route:
{route([("echo-a", 10), ("echo-b", 90)], 9000)}
"""
    gw = gateway_factory(
        [gateway, vs, service_entry("echo-a", 9000, a.port, "TCP"), service_entry("echo-b", 9000, b.port, "TCP")],
        ports=(31400, 31401),
    )
    ca, cb = f"outbound|9000||{fqdn('echo-a')}", f"outbound|9000||{fqdn('echo-b')}"
    tp = tcp_proxies(gw)
    for server, weights in ((31400, [80, 20]), (31401, [10, 90])):
        (proxy,) = tp[gw.port(server)].values()
        assert proxy["stat_prefix"] == "split.default", proxy
        assert "cluster" not in proxy, proxy
        assert proxy["weighted_clusters"]["clusters"] == [
            {"name": ca, "weight": weights[0]}, {"name": cb, "weight": weights[1]}], proxy

    greet = lambda port: lambda: tcp_exchange(port, read_until=b"\n", timeout=5)  # noqa: E731
    first = spread(greet(gw.port(31400)))
    second = spread(greet(gw.port(31401)))
    print(f"\n[tcp weights] 80/20 → {dict(first)}; 10/90 → {dict(second)}")
    assert_shares(first, {b"A\n": 80, b"B\n": 20})
    assert_shares(second, {b"A\n": 10, b"B\n": 90})
    assert a.connections + b.connections == 2 * N
    assert gw.stats("downstream_cx_total").get("tcp.split.default.downstream_cx_total") == 2 * N


# --------------------------------------------------------------------------
# tls: (PASSTHROUGH, sniHosts)


@pytest.fixture
def tls_backends(tmp_path, cert_authority, backend_factory):
    """Three passthrough backends whose certificates cover both test SNIs; answer their name per line."""
    out = {}
    for n in ("one", "two", "three"):
        d = cert_authority.issue(f"{n}.example.com", ["w.example.com", "v.example.com"]).write(tmp_path / n, ca=False)
        out[n] = backend_factory.tls(n, cert=d / "tls.crt", key=d / "tls.key")
    return out, cert_authority.write_ca(tmp_path / "ca.pem")


def test_tls_passthrough_uneven_weights(tls_backends, gateway_factory):
    backends, ca = tls_backends
    gateway = f"""
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {{name: sni-gateway, namespace: {NS}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: tls, protocol: TLS}}
    hosts: [w.example.com, v.example.com]
    tls: {{mode: PASSTHROUGH}}
"""
    vs = f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: sni-split, namespace: {NS}}}
spec:
  hosts: [w.example.com, v.example.com]
  gateways: [sni-gateway]
  tls:
  - match: [{{port: 443, sniHosts: [w.example.com]}}]
    route:
{route([("one", 70), ("two", 30)], 443)}
  - match: [{{port: 443, sniHosts: [v.example.com]}}]
    route:
{route([("one", 10), ("two", 30), ("three", 60)], 443)}
"""
    docs = [gateway, vs] + [service_entry(n, 443, b.port, "TLS") for n, b in backends.items()]
    gw = gateway_factory(docs, ports=(443,))
    cl = {n: f"outbound|443||{fqdn(n)}" for n in backends}
    chains = tcp_proxies(gw)[gw.port(443)]
    assert set(chains) == {("w.example.com",), ("v.example.com",)}, chains
    assert chains[("w.example.com",)]["weighted_clusters"]["clusters"] == [
        {"name": cl["one"], "weight": 70}, {"name": cl["two"], "weight": 30}]
    assert chains[("v.example.com",)]["weighted_clusters"]["clusters"] == [
        {"name": cl["one"], "weight": 10}, {"name": cl["two"], "weight": 30}, {"name": cl["three"], "weight": 60}]
    for proxy in chains.values():
        assert proxy["stat_prefix"] == "sni-split.default" and "cluster" not in proxy, proxy

    port = gw.port(443)
    hello = lambda sni: lambda: tls_exchange(port, sni, b"hi\n", ca=ca, timeout=5)  # noqa: E731
    w = spread(hello("w.example.com"))
    v = spread(hello("v.example.com"))
    print(f"\n[tls weights] w 70/30 → {dict(w)}; v 10/30/60 → {dict(v)}")
    assert_shares(w, {b"one\n": 70, b"two\n": 30})
    assert_shares(v, {b"one\n": 10, b"two\n": 30, b"three\n": 60})
    # the client's SNI reached each backend untouched (passthrough)
    assert {h["sni"] for b in backends.values() for h in b.handshakes} == {"w.example.com", "v.example.com"}
    assert sum(len(b.handshakes) for b in backends.values()) == 2 * N
