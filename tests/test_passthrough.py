"""TLS PASSTHROUGH servers: SNI routing by VirtualService ``tls:`` routes to TLS backends
that present their own certificates (the gateway never terminates TLS).

Istio semantics: istio-semantics.md 1.3 and 3.4 (``gateway.go`` passthrough chains):
one filter chain per VS ``tls[].match`` with ``server_names = sniHosts`` and no TLS
context; a duplicate SNI on the port is skipped with a warning (first VS wins); an
unknown SNI or no SNI matches no chain and the connection is closed. Validation
(``validation.go``): each sniHost must be a subset of a VS host; PASSTHROUGH servers may
not carry ``credentialName``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness import LOCALHOST, https_get, tls_exchange, tls_handshake, wait_until

NS = "default"


def gateway(*servers: str, name: str = "sni-gateway", created: str | None = None) -> str:
    ts = f", creationTimestamp: '{created}'" if created else ""
    return f"""
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {{name: {name}, namespace: {NS}{ts}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
{chr(10).join(servers)}
"""


def passthrough_server(hosts: list[str], name: str = "tls", extra: str = "") -> str:
    hs = ", ".join(f'"{h}"' for h in hosts)
    return f"""\
  - port: {{number: 443, name: {name}, protocol: TLS}}
    hosts: [{hs}]
    tls: {{mode: PASSTHROUGH{extra}}}"""


def tls_vs(name: str, hosts: list[str], snis: list[str], dest: str, gateways: str = "[sni-gateway]",
           created: str | None = None) -> str:
    ts = f", creationTimestamp: '{created}'" if created else ""
    return f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: {name}, namespace: {NS}{ts}}}
spec:
  hosts: {yaml.safe_dump(hosts, default_flow_style=True).strip()}
  gateways: {gateways}
  tls:
  - match:
    - port: 443
      sniHosts: {yaml.safe_dump(snis, default_flow_style=True).strip()}
    route:
    - destination: {{host: {dest}, port: {{number: 443}}}}
"""


def service_entry(name: str, target: int) -> str:
    return f"""
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {NS}}}
spec:
  hosts: [{name}.{NS}.svc.cluster.local]
  ports: [{{number: 443, name: tls, protocol: TLS, targetPort: {target}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""


@pytest.fixture
def pki(tmp_path, cert_authority):
    """Certificates for one.example.com and two.example.com, and the CA file."""
    out = {}
    for n in ("one", "two"):
        d = cert_authority.issue(f"{n}.example.com").write(tmp_path / n, ca=False)
        out[n] = (d / "tls.crt", d / "tls.key")
    out["ca"] = cert_authority.write_ca(tmp_path / "ca.pem")
    return out


@pytest.fixture
def backends(backend_factory, pki):
    one = backend_factory.tls("one", cert=pki["one"][0], key=pki["one"][1])
    two = backend_factory.tls("two", cert=pki["two"][0], key=pki["two"][1])
    return one, two


def _listener(gw, port: int) -> dict:
    boot = yaml.safe_load(gw.bootstrap_path.read_text())
    for lst in boot["static_resources"]["listeners"]:
        if lst["name"] == f"0.0.0.0_{port}":
            return lst
    raise AssertionError("no listener for the passthrough port")


def _assert_routed(port: int, sni: str, name: str, ca) -> None:
    hs = tls_handshake(LOCALHOST, port, sni, ca=ca)
    assert hs.ok, f"SNI {sni}: {hs.error!r}"
    assert hs.subject_cn == f"{name}.example.com", f"SNI {sni} reached {hs.subject_cn}"
    assert tls_exchange(port, sni, b"hi\n", ca=ca) == f"{name}\n".encode()


def _assert_refused(port: int, sni: str | None) -> None:
    hs = tls_handshake(LOCALHOST, port, sni, verify=False)
    assert not hs.ok, f"SNI {sni!r} got a certificate {hs.subject_cn}"
    assert hs.cert is None


def test_sni_routes_to_the_backend_with_its_own_certificate(backends, gateway_factory, pki):
    one, two = backends
    gw = gateway_factory(
        [gateway(passthrough_server(["one.example.com", "two.example.com"])),
         tls_vs("one", ["one.example.com"], ["one.example.com"], "one"),
         tls_vs("two", ["two.example.com"], ["two.example.com"], "two"),
         service_entry("one", one.port), service_entry("two", two.port)],
        ports=(443,),
    )
    port = gw.port(443)
    _assert_routed(port, "one.example.com", "one", pki["ca"])
    _assert_routed(port, "two.example.com", "two", pki["ca"])
    # HTTP over the passthrough connection reaches the backend that owns the SNI
    r = https_get(gw, 443, "/", host="two.example.com", ca=pki["ca"])
    assert r.status == 200
    assert r.headers["x-backend"] == "two"
    assert r.json()["sni"] == "two.example.com"  # the client's SNI reaches the backend untouched
    assert r.tls.cert.subject_cn == "two.example.com"
    assert {h["sni"] for h in one.handshakes} == {"one.example.com"}
    n_one, n_two = len(one.handshakes), len(two.handshakes)
    # unknown SNI and no SNI: no chain, connection closed, no certificate
    _assert_refused(port, "three.example.com")
    _assert_refused(port, None)
    assert (len(one.handshakes), len(two.handshakes)) == (n_one, n_two)
    # bundle shape: tls_inspector, one chain per SNI, no TLS context at the gateway
    lst = _listener(gw, port)
    assert [f["name"] for f in lst["listener_filters"]] == ["envoy.filters.listener.tls_inspector"]
    chains = lst["filter_chains"]
    assert sorted(c["filter_chain_match"]["server_names"] for c in chains) == [["one.example.com"], ["two.example.com"]]
    for c in chains:
        assert "transport_socket" not in c
        tp = c["filters"][-1]["typed_config"]
        want = "one" if c["filter_chain_match"]["server_names"] == ["one.example.com"] else "two"
        assert tp["cluster"] == f"outbound|443||{want}.default.svc.cluster.local"


def test_wildcard_server_host(backends, gateway_factory, pki):
    one, two = backends
    gw = gateway_factory(
        [gateway(passthrough_server(["*.example.com"])),
         tls_vs("one", ["one.example.com"], ["one.example.com"], "one"),
         tls_vs("two", ["*.example.com"], ["two.example.com"], "two"),
         service_entry("one", one.port), service_entry("two", two.port)],
        ports=(443,),
    )
    port = gw.port(443)
    _assert_routed(port, "one.example.com", "one", pki["ca"])
    _assert_routed(port, "two.example.com", "two", pki["ca"])
    _assert_refused(port, "other.example.com")  # matches the server host, but no VS sniHost


def test_wildcard_sni_host_in_vs(backends, gateway_factory, pki):
    one, _ = backends
    gw = gateway_factory(
        [gateway(passthrough_server(["*.example.com"])),
         tls_vs("any", ["*.example.com"], ["*.example.com"], "one"),
         service_entry("one", one.port)],
        ports=(443,),
    )
    port = gw.port(443)
    hs = tls_handshake(LOCALHOST, port, "one.example.com", ca=pki["ca"])
    assert hs.ok and hs.subject_cn == "one.example.com"
    # a wildcard SNI chain matches any sub-domain (the backend's cert simply does not cover it)
    hs = tls_handshake(LOCALHOST, port, "zzz.example.com", verify=False)
    assert hs.ok and hs.subject_cn == "one.example.com"
    _assert_refused(port, "example.org")


def test_several_passthrough_servers_share_443(backends, gateway_factory, pki):
    """Two Gateways, each with a PASSTHROUGH server on 443: one listener, chains chosen by SNI."""
    one, two = backends
    gw = gateway_factory(
        [gateway(passthrough_server(["one.example.com"], name="tls-one"), name="gw-one"),
         gateway(passthrough_server(["two.example.com"], name="tls-two"), name="gw-two"),
         tls_vs("one", ["one.example.com"], ["one.example.com"], "one", gateways="[gw-one]"),
         tls_vs("two", ["two.example.com"], ["two.example.com"], "two", gateways="[gw-two]"),
         service_entry("one", one.port), service_entry("two", two.port)],
        ports=(443,),
    )
    port = gw.port(443)
    _assert_routed(port, "one.example.com", "one", pki["ca"])
    _assert_routed(port, "two.example.com", "two", pki["ca"])
    _assert_refused(port, None)
    names = [l["name"] for l in yaml.safe_load(gw.bootstrap_path.read_text())["static_resources"]["listeners"]]
    assert names.count(f"0.0.0.0_{port}") == 1


def test_two_servers_in_one_gateway_share_443(backends, gateway_factory, pki):
    one, two = backends
    gw = gateway_factory(
        [gateway(passthrough_server(["one.example.com"], name="tls-one"),
                 passthrough_server(["two.example.com"], name="tls-two")),
         tls_vs("one", ["one.example.com"], ["one.example.com"], "one"),
         tls_vs("two", ["two.example.com"], ["two.example.com"], "two"),
         service_entry("one", one.port), service_entry("two", two.port)],
        ports=(443,),
    )
    port = gw.port(443)
    _assert_routed(port, "one.example.com", "one", pki["ca"])
    _assert_routed(port, "two.example.com", "two", pki["ca"])


def test_vs_not_matching_server_hosts_gets_no_chain(backends, gateway_factory, pki):
    one, two = backends
    gw = gateway_factory(
        [gateway(passthrough_server(["one.example.com"])),
         tls_vs("one", ["one.example.com"], ["one.example.com"], "one"),
         tls_vs("two", ["two.example.com"], ["two.example.com"], "two"),  # server does not admit two.example.com
         service_entry("one", one.port), service_entry("two", two.port)],
        ports=(443,),
    )
    port = gw.port(443)
    _assert_routed(port, "one.example.com", "one", pki["ca"])
    _assert_refused(port, "two.example.com")
    assert two.handshakes == []


def test_duplicate_sni_first_vs_wins_with_warning(backends, gateway_factory, pki):
    one, two = backends
    gw = gateway_factory(
        [gateway(passthrough_server(["one.example.com", "two.example.com"])),
         # "b-first" was created first, so it wins SNI one.example.com although "a-second" sorts first by name
         tls_vs("a-second", ["one.example.com", "two.example.com"], ["one.example.com", "two.example.com"], "two",
                created="2024-02-01T00:00:00Z"),
         tls_vs("b-first", ["one.example.com"], ["one.example.com"], "one", created="2024-01-01T00:00:00Z"),
         service_entry("one", one.port), service_entry("two", two.port)],
        ports=(443,),
        start=False,
    )
    r = gw.render()
    assert r.exit_code == 0, r.stderr
    assert "EG0206" in r.stderr
    assert "warning" in r.stderr
    gw.start()
    port = gw.port(443)
    _assert_routed(port, "one.example.com", "one", pki["ca"])
    # Istio skips the whole tls match that holds a duplicate SNI (gateway.go
    # buildGatewayNetworkFiltersFromTLSRoutes: CheckDuplicates(match.SniHosts) != 0 → continue), so the
    # later VS's other SNI of that same match gets no chain either
    _assert_refused(port, "two.example.com")
    assert two.handshakes == []


def test_duplicate_sni_in_separate_match_keeps_the_other_match(backends, gateway_factory, pki):
    """Only the match holding the duplicate is skipped; another match of the same VS still applies."""
    one, two = backends
    later = f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: a-later, namespace: {NS}, creationTimestamp: '2024-02-01T00:00:00Z'}}
spec:
  hosts: [one.example.com, two.example.com]
  gateways: [sni-gateway]
  tls:
  - match: [{{sniHosts: [one.example.com]}}, {{sniHosts: [two.example.com]}}]
    route:
    - destination: {{host: two, port: {{number: 443}}}}
"""
    gw = gateway_factory(
        [gateway(passthrough_server(["one.example.com", "two.example.com"])),
         later,
         tls_vs("b-first", ["one.example.com"], ["one.example.com"], "one", created="2024-01-01T00:00:00Z"),
         service_entry("one", one.port), service_entry("two", two.port)],
        ports=(443,),
    )
    port = gw.port(443)
    _assert_routed(port, "one.example.com", "one", pki["ca"])
    _assert_routed(port, "two.example.com", "two", pki["ca"])
    assert "EG0206" in gw.render_result.stderr


def test_passthrough_server_with_duplicate_host_is_dropped_whole(backends, gateway_factory, pki):
    """Istio mergeGateways: a server with TLS settings (PASSTHROUGH included) that repeats a host already
    used on the port is skipped entirely ("skipping server on gateway ..., duplicate host names")."""
    one, two = backends
    gw = gateway_factory(
        [gateway(passthrough_server(["one.example.com"], name="tls-a"), name="gw-a", created="2024-01-01T00:00:00Z"),
         gateway(passthrough_server(["one.example.com", "two.example.com"], name="tls-b"), name="gw-b",
                 created="2024-02-01T00:00:00Z"),
         tls_vs("one", ["one.example.com"], ["one.example.com"], "one", gateways="[gw-a]"),
         tls_vs("two", ["two.example.com"], ["two.example.com"], "two", gateways="[gw-b]"),
         service_entry("one", one.port), service_entry("two", two.port)],
        ports=(443,),
    )
    port = gw.port(443)
    _assert_routed(port, "one.example.com", "one", pki["ca"])
    _assert_refused(port, "two.example.com")
    assert two.handshakes == []
    assert "EG0206" in gw.render_result.stderr


def test_tls_match_port_other_than_server_gives_no_listener(backends, gateway_factory):
    one, _ = backends
    vs = tls_vs("one", ["one.example.com"], ["one.example.com"], "one").replace("- port: 443", "- port: 8443")
    gw = gateway_factory(
        [gateway(passthrough_server(["one.example.com"])), vs, service_entry("one", one.port)],
        ports=(443,),
        start=False,
    )
    r = gw.render()
    # the only server gets no listener: the gateway would answer nothing, an error (issue 10), OUT untouched
    assert r.exit_code == 1, r.stderr
    assert "warning EG0212 no listener for 0.0.0.0_" in r.stderr, r.stderr
    assert "EG0212 gateway workload istio-system/istio-ingressgateway" in r.stderr, r.stderr
    assert not r.out_dir.exists() or not any(r.out_dir.iterdir())


def _render_error(gateway_factory, docs):
    gw = gateway_factory(docs, ports=(443,), start=False)
    return gw.render()


def test_sni_host_not_in_vs_hosts_is_eg0106(gateway_factory):
    r = _render_error(gateway_factory, [
        gateway(passthrough_server(["*.example.com"])),
        tls_vs("one", ["one.example.com"], ["two.example.com"], "one"),
        service_entry("one", 9),
    ])
    assert r.exit_code == 1, r.stderr
    assert "EG0106" in r.stderr
    assert "sniHosts" in r.stderr


def test_passthrough_with_credential_name_is_eg0106(gateway_factory):
    r = _render_error(gateway_factory, [
        gateway(passthrough_server(["one.example.com"], extra=", credentialName: one-cred")),
        tls_vs("one", ["one.example.com"], ["one.example.com"], "one"),
        service_entry("one", 9),
    ])
    assert r.exit_code == 1, r.stderr
    assert "EG0106" in r.stderr
    assert "spec.servers[0].tls" in r.stderr


def test_tls_route_without_route_is_eg0103(gateway_factory):
    vs = f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: one, namespace: {NS}}}
spec:
  hosts: [one.example.com]
  gateways: [sni-gateway]
  tls:
  - match: [{{sniHosts: [one.example.com]}}]
"""
    r = _render_error(gateway_factory, [gateway(passthrough_server(["one.example.com"])), vs, service_entry("one", 9)])
    assert r.exit_code == 1, r.stderr
    assert "EG0103" in r.stderr


# --------------------------------------------------------------------------
# samples/sni-passthrough

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "sni-passthrough"


def test_sni_passthrough_sample(backend_factory, gateway_factory, cert_authority, tmp_path):
    ca = cert_authority.write_ca(tmp_path / "ca.pem")
    backends = {}
    for name, host in (("nginx", "nginx.example.com"), ("legacy", "legacy.example.com")):
        d = cert_authority.issue(host).write(tmp_path / name, ca=False)
        backends[name] = backend_factory.tls(name, cert=d / "tls.crt", key=d / "tls.key")
    local = "---\n".join(
        f"""
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: {svc}-local, namespace: default}}
spec:
  hosts: [{svc}.default.svc.cluster.local]
  ports: [{{number: {port}, name: tls, protocol: TLS, targetPort: {backends[b].port}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""
        for svc, port, b in (("my-nginx", 443, "nginx"), ("legacy-app", 8443, "legacy"))
    )
    args_file = SAMPLE / "render.args"
    args = args_file.read_text().split() if args_file.exists() else []
    gw = gateway_factory([SAMPLE, local], ports=(443,), args=args)
    port = gw.port(443)
    r = https_get(gw, 443, "/", host="nginx.example.com", ca=ca)
    assert (r.status, r.headers["x-backend"], r.tls.cert.subject_cn) == (200, "nginx", "nginx.example.com")
    r = https_get(gw, 443, "/", host="legacy.example.com", ca=ca)
    assert (r.status, r.headers["x-backend"], r.tls.cert.subject_cn) == (200, "legacy", "legacy.example.com")
    _assert_refused(port, "other.example.com")
    _assert_refused(port, None)
    chains = _listener(gw, port)["filter_chains"]
    assert {c["filter_chain_match"]["server_names"][0]: c["filters"][-1]["typed_config"]["cluster"] for c in chains} == {
        "nginx.example.com": "outbound|443||my-nginx.default.svc.cluster.local",
        "legacy.example.com": "outbound|8443||legacy-app.default.svc.cluster.local",
    }


# --------------------------------------------------------------------------
# more shapes


def test_https_protocol_with_passthrough_mode(backends, gateway_factory, pki):
    """Istio's own task uses protocol HTTPS + mode PASSTHROUGH: same SNI routing, no termination."""
    one, _ = backends
    server = """\
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["one.example.com"]
    tls: {mode: PASSTHROUGH}"""
    gw = gateway_factory(
        [gateway(server), tls_vs("one", ["one.example.com"], ["one.example.com"], "one"),
         service_entry("one", one.port)],
        ports=(443,),
    )
    port = gw.port(443)
    _assert_routed(port, "one.example.com", "one", pki["ca"])
    _assert_refused(port, None)


def test_terminating_https_and_passthrough_share_443(backend_factory, backends, gateway_factory, pki,
                                                     cert_authority, tmp_path):
    """An HTTPS server (terminated with the gateway's certificate) and a PASSTHROUGH server on the same
    port: one listener, the SNI picks the chain."""
    one, _ = backends
    web = backend_factory("web")
    creds = tmp_path / "creds"
    cert_authority.issue("web.example.com").write(creds / "web-cred")
    https = """\
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["web.example.com"]
    tls: {mode: SIMPLE, credentialName: web-cred}"""
    web_vs = f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: web, namespace: {NS}}}
spec:
  hosts: [web.example.com]
  gateways: [sni-gateway]
  http:
  - route:
    - destination: {{host: web, port: {{number: 80}}}}
"""
    web_se = f"""
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: web, namespace: {NS}}}
spec:
  hosts: [web.{NS}.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {web.port}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""
    gw = gateway_factory(
        [gateway(https, passthrough_server(["one.example.com"], name="tls-one")), web_vs, web_se,
         tls_vs("one", ["one.example.com"], ["one.example.com"], "one"), service_entry("one", one.port)],
        ports=(443,),
        args=["--credentials-dir", str(creds)],
    )
    port = gw.port(443)
    r = https_get(gw, 443, "/hello", host="web.example.com", ca=pki["ca"])
    assert (r.status, r.headers["x-backend"], r.tls.cert.subject_cn) == (200, "web", "web.example.com")
    assert web.requests[-1]["headers"]["x-forwarded-proto"] == "https"
    _assert_routed(port, "one.example.com", "one", pki["ca"])
    _assert_refused(port, "other.example.com")
    assert len(_listener(gw, port)["filter_chains"]) == 2


def test_exact_sni_beats_wildcard_sni(backends, gateway_factory, pki):
    """Chains for *.example.com and one.example.com are both kept (CheckDuplicates compares literal strings);
    Envoy prefers the exact server name."""
    one, two = backends
    gw = gateway_factory(
        [gateway(passthrough_server(["*.example.com"])),
         tls_vs("a-wild", ["*.example.com"], ["*.example.com"], "two"),
         tls_vs("b-exact", ["one.example.com"], ["one.example.com"], "one"),
         service_entry("one", one.port), service_entry("two", two.port)],
        ports=(443,),
    )
    port = gw.port(443)
    _assert_routed(port, "one.example.com", "one", pki["ca"])
    _assert_routed(port, "two.example.com", "two", pki["ca"])
    hs = tls_handshake(LOCALHOST, port, "x.example.com", verify=False)
    assert hs.ok and hs.subject_cn == "two.example.com"


def test_tls_match_gateways_restricts(backends, gateway_factory, pki):
    one, two = backends
    vs = f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: both, namespace: {NS}}}
spec:
  hosts: [one.example.com, two.example.com]
  gateways: [sni-gateway]
  tls:
  - match: [{{sniHosts: [one.example.com], gateways: [other-gateway]}}]
    route: [{{destination: {{host: one, port: {{number: 443}}}}}}]
  - match: [{{sniHosts: [two.example.com], gateways: [sni-gateway]}}]
    route: [{{destination: {{host: two, port: {{number: 443}}}}}}]
"""
    gw = gateway_factory(
        [gateway(passthrough_server(["one.example.com", "two.example.com"])), vs,
         service_entry("one", one.port), service_entry("two", two.port)],
        ports=(443,),
    )
    port = gw.port(443)
    _assert_refused(port, "one.example.com")
    _assert_routed(port, "two.example.com", "two", pki["ca"])
    assert one.handshakes == []


def test_weighted_passthrough_destinations(backend_factory, gateway_factory, pki, cert_authority, tmp_path):
    """Two backends for the same SNI with weights: both answer (each with its own certificate for the name)."""
    backs = {}
    for n in ("blue", "green"):
        d = cert_authority.issue("app.example.com").write(tmp_path / n, ca=False)
        backs[n] = backend_factory.tls(n, cert=d / "tls.crt", key=d / "tls.key")
    vs = f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: app, namespace: {NS}}}
spec:
  hosts: [app.example.com]
  gateways: [sni-gateway]
  tls:
  - match: [{{sniHosts: [app.example.com]}}]
    route:
    - {{destination: {{host: blue, port: {{number: 443}}}}, weight: 50}}
    - {{destination: {{host: green, port: {{number: 443}}}}, weight: 50}}
"""
    gw = gateway_factory(
        [gateway(passthrough_server(["app.example.com"])), vs,
         service_entry("blue", backs["blue"].port), service_entry("green", backs["green"].port)],
        ports=(443,),
    )
    seen = set()
    for _ in range(40):  # bounded
        seen.add(tls_exchange(gw.port(443), "app.example.com", b"who\n", ca=pki["ca"]))
        if len(seen) == 2:
            break
    assert seen == {b"blue\n", b"green\n"}


def test_access_log_records_passthrough_and_rejected_sni(backends, gateway_factory, pki, tmp_path):
    """--access-log: tcp_proxy logs routed connections; the listener-level logger (Istio attaches the same
    logger there) records the connection whose SNI matched no chain."""
    one, _ = backends
    log = tmp_path / "access.log"
    gw = gateway_factory(
        [gateway(passthrough_server(["one.example.com", "two.example.com"])),
         tls_vs("one", ["one.example.com"], ["one.example.com"], "one"), service_entry("one", one.port)],
        ports=(443,),
        args=["--access-log", str(log)],
    )
    port = gw.port(443)
    _assert_routed(port, "one.example.com", "one", pki["ca"])
    _assert_refused(port, "three.example.com")

    def lines() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    # Envoy flushes access-log files every 10 s (--file-flush-interval-msec default) or on a full buffer
    wait_until(lambda: any("three.example.com" in l for l in lines())
               and any("outbound|443||one.default.svc.cluster.local" in l for l in lines()), timeout=15)
    rejected = [l for l in lines() if "three.example.com" in l]
    assert len(rejected) == 1 and " NR " in rejected[0], rejected  # no filter chain matched
    # two routed connections (handshake + exchange), each logged once, by tcp_proxy: Istio's listener-level
    # logger carries a response-flag filter NR (accesslog.go addAccessLogFilter), so it logs only rejects
    routed = [l for l in lines() if "one.example.com" in l]
    assert len(routed) == 2, "\n".join(routed)
    assert all("outbound|443||one.default.svc.cluster.local" in l for l in routed)


def test_client_certificate_passes_through_to_the_backend(backend_factory, gateway_factory, pki, cert_authority,
                                                          tmp_path):
    """End-to-end mTLS through a passthrough gateway: the backend itself demands and sees the client cert."""
    client = cert_authority.issue("client.example.com", client=True).write(tmp_path / "client", ca=False)
    secure = backend_factory.tls("secure", cert=pki["one"][0], key=pki["one"][1], client_ca=pki["ca"])
    gw = gateway_factory(
        [gateway(passthrough_server(["one.example.com"])),
         tls_vs("one", ["one.example.com"], ["one.example.com"], "one"), service_entry("one", secure.port)],
        ports=(443,),
    )
    got = tls_exchange(gw.port(443), "one.example.com", b"hi\n", ca=pki["ca"],
                       client_cert=client / "tls.crt", client_key=client / "tls.key")
    assert got == b"secure\n"
    ok = [h for h in secure.handshakes if h["error"] is None]
    assert ok and ok[-1]["peer_cert"].subject_cn == "client.example.com"
    assert ok[-1]["sni"] == "one.example.com"


def test_passthrough_server_repeating_an_https_host_is_dropped(backend_factory, backends, gateway_factory, pki,
                                                               cert_authority, tmp_path):
    """HTTPS (terminating) server first, then a PASSTHROUGH server with the same host on 443: Istio's
    CheckDuplicates skips the later server whole; the SNI keeps reaching the terminating chain."""
    one, _ = backends
    web = backend_factory("web")
    creds = tmp_path / "creds"
    cert_authority.issue("one.example.com").write(creds / "gw-cred")
    https = """\
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["one.example.com"]
    tls: {mode: SIMPLE, credentialName: gw-cred}"""
    web_vs = f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: web, namespace: {NS}}}
spec:
  hosts: [one.example.com]
  gateways: [sni-gateway]
  http:
  - route:
    - destination: {{host: web, port: {{number: 80}}}}
"""
    web_se = f"""
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: web, namespace: {NS}}}
spec:
  hosts: [web.{NS}.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {web.port}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""
    gw = gateway_factory(
        [gateway(https, passthrough_server(["one.example.com"], name="tls-one")), web_vs, web_se,
         tls_vs("one", ["one.example.com"], ["one.example.com"], "one"), service_entry("one", one.port)],
        ports=(443,),
        args=["--credentials-dir", str(creds)],
    )
    r = https_get(gw, 443, "/", host="one.example.com", ca=pki["ca"])
    assert (r.status, r.headers["x-backend"]) == (200, "web")  # terminated by the gateway, HTTP backend
    assert r.headers["server"] == "istio-envoy"
    assert one.handshakes == []
    assert "EG0206" in gw.render_result.stderr
    assert len(_listener(gw, gw.port(443))["filter_chains"]) == 1


def test_sni_hosts_are_not_intersected_with_server_hosts(backends, gateway_factory, pki):
    """Istio surprise: once a VS's hosts match the server, every sniHost of its tls matches becomes a chain,
    even one the server does not list (gateway.go only checks VS hosts against server hosts)."""
    one, two = backends
    vs = f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: both, namespace: {NS}}}
spec:
  hosts: [one.example.com, two.example.com]
  gateways: [sni-gateway]
  tls:
  - match: [{{sniHosts: [two.example.com]}}]
    route: [{{destination: {{host: two, port: {{number: 443}}}}}}]
"""
    gw = gateway_factory(
        [gateway(passthrough_server(["one.example.com"])), vs,
         service_entry("one", one.port), service_entry("two", two.port)],
        ports=(443,),
    )
    _assert_routed(gw.port(443), "two.example.com", "two", pki["ca"])
    _assert_refused(gw.port(443), "one.example.com")
