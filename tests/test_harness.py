"""Tests of the end-to-end harness itself; they need Envoy but not the compiler."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from harness import (
    Backend,
    CertAuthority,
    Gateway,
    GatewayStartError,
    RenderError,
    free_port,
    free_ports,
    http_get,
    https_get,
    run_curl,
    tcp_exchange,
    tls_exchange,
    tls_handshake,
    wait_until,
)

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
TLS_INSPECTOR = "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"


def _cluster(name: str, port_var: str) -> str:
    return f"""
  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{address: 127.0.0.1, port_value: ${{{port_var}}}}}
"""


def _hcm(stat_prefix: str, cluster: str | None, readiness: bool = False) -> str:
    if readiness:
        routes = """
              - match: {path: /healthz/ready}
                route: {cluster: admin, prefix_rewrite: /ready}"""
    else:
        routes = f"""
              - match: {{prefix: "/"}}
                route: {{cluster: {cluster}}}"""
    return f"""
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM}
          stat_prefix: {stat_prefix}
          route_config:
            name: {stat_prefix}
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:{routes}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": {ROUTER}}}
"""


# A minimal, hand-written bootstrap: plain HTTP on ${port_80} to the harness
# backend, readiness on ${readiness_port} (/healthz/ready → admin /ready).
MINIMAL_BOOTSTRAP = (
    """
node: {id: harness, cluster: harness}
admin:
  address:
    socket_address: {address: 127.0.0.1, port_value: ${admin_port}}
static_resources:
  listeners:
  - name: http
    address:
      socket_address: {address: 127.0.0.1, port_value: ${port_80}}
    filter_chains:
    - filters:"""
    + _hcm("http", "backend")
    + """
  - name: readiness
    address:
      socket_address: {address: 127.0.0.1, port_value: ${readiness_port}}
    filter_chains:
    - filters:"""
    + _hcm("readiness", None, readiness=True)
    + """
  clusters:"""
    + _cluster("backend", "backend_port")
    + _cluster("admin", "admin_port")
)

# The same plus TLS termination, TLS passthrough (by SNI) and a TCP proxy.
TLS_TCP_LISTENERS = (
    """
  - name: https
    address:
      socket_address: {address: 127.0.0.1, port_value: ${port_443}}
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: {"@type": """
    + TLS_INSPECTOR
    + """}
    filter_chains:
    - filter_chain_match: {server_names: [passthrough.example.com]}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: {"@type": """
    + TCP_PROXY
    + """, stat_prefix: passthrough, cluster: tls_backend}
    - filter_chain_match: {server_names: [web.example.com]}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": """
    + DOWNSTREAM_TLS
    + """
          common_tls_context:
            alpn_protocols: [http/1.1]
            tls_certificates:
            - certificate_chain: {filename: ${cert}}
              private_key: {filename: ${key}}
      filters:"""
    + _hcm("https", "backend")
    + """
  - name: tcp
    address:
      socket_address: {address: 127.0.0.1, port_value: ${port_31400}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: {"@type": """
    + TCP_PROXY
    + """, stat_prefix: tcp, cluster: echo}
"""
)


def full_bootstrap() -> str:
    head, clusters = MINIMAL_BOOTSTRAP.split("\n  clusters:", 1)
    return (
        head
        + TLS_TCP_LISTENERS
        + "  clusters:"
        + clusters
        + _cluster("tls_backend", "tls_backend_port")
        + _cluster("echo", "echo_port")
    )


# --------------------------------------------------------------------------
# ports


def test_free_ports_are_distinct_and_bindable():
    ports = free_ports(8) + [free_port(), free_port()]
    assert len(set(ports)) == 10
    for p in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


def test_wait_until_is_bounded():
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        wait_until(lambda: False, timeout=0.2)
    assert time.monotonic() - t0 < 1.0
    assert wait_until(lambda: 42, timeout=0.1) == 42


# --------------------------------------------------------------------------
# backends


def test_backend_describes_and_records_requests(backend_factory):
    b = backend_factory("v1", headers=[("x-extra", "a"), ("x-extra", "b")])
    st, h, body = http_get(None, b.port, "/p/q?x=1&y=2", host="example.com:80",
                           headers={"X-Test": "yes"}, method="POST", body=b"payload")
    assert st == 200
    assert h["x-backend"] == "v1"
    assert h["x-extra"] == "a,b" and h.get_all("x-extra") == ["a", "b"]
    doc = json.loads(body)
    assert doc["backend"] == "v1"
    assert doc["method"] == "POST"
    assert doc["path"] == "/p/q?x=1&y=2"
    assert doc["headers"]["host"] == "example.com:80"
    assert doc["headers"]["x-test"] == "yes"
    assert doc["body"] == "payload"
    assert set(doc) == {"backend", "method", "path", "headers", "body"}

    for method in ("PURGE", "DELETE", "HEAD", "OPTIONS"):
        r = http_get(None, b.port, "/m", method=method)
        assert r.status == 200, method
    assert [r["method"] for r in b.requests] == ["POST", "PURGE", "DELETE", "HEAD", "OPTIONS"]
    assert b.count == 5


def test_backend_repeated_request_headers_are_joined(backend_factory):
    b = backend_factory("v1")
    r = http_get(None, b.port, "/", headers=[("X-Dup", "1"), ("X-Dup", "2")])
    assert r.json()["headers"]["x-dup"] == "1,2"


def test_backend_concurrent_requests_are_all_recorded(backend_factory):
    b = backend_factory("v1", delay=0.2)
    threads = [threading.Thread(target=http_get, args=(None, b.port, f"/{i}")) for i in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert time.monotonic() - t0 < 1.5  # threaded: not 8 x 0.2 s
    assert sorted(r["path"] for r in b.requests) == sorted(f"/{i}" for i in range(8))


def test_backend_fail_first_then_status(backend_factory):
    b = backend_factory("flaky", fail_first=2, status=201)
    assert [http_get(None, b.port, "/").status for _ in range(4)] == [503, 503, 201, 201]
    assert [r["status"] for r in b.requests] == [503, 503, 201, 201]
    b.reset()
    assert b.count == 0
    assert http_get(None, b.port, "/").status == 503


@pytest.mark.parametrize("mode", ["close", "reset"])
def test_backend_drop_first(backend_factory, mode):
    b = backend_factory("dropper", drop_first=1, drop_mode=mode)
    with pytest.raises((ConnectionError, OSError)):
        http_get(None, b.port, "/")
    assert http_get(None, b.port, "/").status == 200
    assert [r["action"] for r in b.requests] == ["drop", "answer"]


def test_backend_delay_and_per_request_overrides(backend_factory):
    b = backend_factory("slow", delay=0.3, delay_first=1)
    t0 = time.monotonic()
    http_get(None, b.port, "/")
    assert time.monotonic() - t0 >= 0.3
    t0 = time.monotonic()
    http_get(None, b.port, "/")
    assert time.monotonic() - t0 < 0.3
    r = http_get(None, b.port, "/", headers={"x-harness-status": "418"})
    assert r.status == 418
    with pytest.raises(TimeoutError):
        http_get(None, b.port, "/", headers={"x-harness-delay": "1"}, timeout=0.2)


def test_backend_restart_keeps_port_and_stop_refuses(backend_factory):
    b = backend_factory("v1")
    port = b.port
    b.stop()
    with pytest.raises(ConnectionRefusedError):
        http_get(None, port, "/", timeout=1)
    b.start()
    assert b.port == port
    assert http_get(None, port, "/").status == 200


def test_backend_context_manager_stops():
    with Backend("cm") as b:
        port = b.port
        assert http_get(None, port, "/").status == 200
    with pytest.raises(ConnectionRefusedError):
        http_get(None, port, "/", timeout=1)


def test_tcp_echo_backend(backend_factory):
    e = backend_factory.tcp("tcp1", greeting=b"echo-tcp1:")
    assert tcp_exchange(e.port, b"hello") == b"echo-tcp1:hello"
    assert tcp_exchange(e.port, b"x", read_until=len(b"echo-tcp1:x"), half_close=False) == b"echo-tcp1:x"
    assert e.connections == 2
    assert e.received == b"hellox"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("pki")
    ca = CertAuthority("harness-ca")
    ca_file = ca.write_ca(d / "ca.crt")
    web = ca.issue("web.example.com", ["web.example.com", "*.web.example.com"])
    pt = ca.issue("passthrough.example.com")
    client = ca.issue("client-1", client=True)
    return {
        "ca": ca,
        "ca_file": ca_file,
        "web": web,
        "web_dir": web.write(d / "web"),
        "pt": pt,
        "pt_dir": pt.write(d / "pt"),
        "client": client,
        "client_dir": client.write(d / "client"),
    }


def test_tls_backend_and_handshake(backend_factory, pki):
    pt_dir = pki["pt_dir"]
    t = backend_factory.tls("tls1", cert=pt_dir / "tls.crt", key=pt_dir / "tls.key", alpn=["h2", "http/1.1"])
    res = tls_handshake("127.0.0.1", t.port, "passthrough.example.com", ca=pki["ca_file"], alpn=["http/1.1"])
    assert res.ok, res.error
    assert res.subject_cn == "passthrough.example.com"
    assert res.sans == ("passthrough.example.com",)
    assert res.serial == pki["pt"].serial
    assert res.cert.issuer_cn == "harness-ca"
    assert res.alpn == "http/1.1"
    # wrong name: verification fails, reported not raised
    bad = tls_handshake("127.0.0.1", t.port, "other.example.com", ca=pki["ca_file"])
    assert not bad.ok and "match" in str(bad.error).lower()
    assert tls_exchange(t.port, "passthrough.example.com", b"hi\n", ca=pki["ca_file"]) == b"tls1\n"
    r = https_get(None, t.port, "/", host="passthrough.example.com", ca=pki["ca_file"])
    assert r.status == 200 and r.headers["x-backend"] == "tls1"
    assert r.json()["sni"] == "passthrough.example.com"
    wait_until(lambda: len(t.handshakes) >= 3, 2)
    assert t.handshakes[0]["sni"] == "passthrough.example.com"


def test_tls_backend_requires_client_cert(backend_factory, pki):
    pt_dir, c = pki["pt_dir"], pki["client_dir"]
    t = backend_factory.tls("mtls", cert=pt_dir / "tls.crt", key=pt_dir / "tls.key", client_ca=pki["ca_file"])
    no_cert = tls_handshake("127.0.0.1", t.port, "passthrough.example.com", ca=pki["ca_file"])
    assert not no_cert.ok
    ok = tls_handshake("127.0.0.1", t.port, "passthrough.example.com", ca=pki["ca_file"],
                       client_cert=c / "tls.crt", client_key=c / "tls.key")
    assert ok.ok, ok.error
    wait_until(lambda: any(h.get("peer_cert") for h in t.handshakes), 2)
    assert [h["peer_cert"].subject_cn for h in t.handshakes if h.get("peer_cert")] == ["client-1"]


def test_cert_authority_expired_and_secret(pki):
    ca: CertAuthority = pki["ca"]
    old = ca.issue("old.example.com", expired=True)
    from harness import cert_info

    info = cert_info(old.cert_pem)
    assert info.not_after.timestamp() < time.time()
    y = old.secret_yaml("old-cred", include_ca=True)
    assert "kubernetes.io/tls" in y and "ca.crt:" in y
    assert (pki["web_dir"] / "tls.key").stat().st_mode & 0o777 == 0o600


# --------------------------------------------------------------------------
# Envoy on a hand-written bootstrap


def test_gateway_from_bootstrap_routes_to_backend(backend_factory, gateway_factory):
    b = backend_factory("v1")
    gw = gateway_factory.from_bootstrap(MINIMAL_BOOTSTRAP, ports=(80,), variables={"backend_port": b.port})
    assert gw.running
    status, headers, body = http_get(gw, 80, "/hello?a=b", host="web.example.com")
    assert status == 200
    assert json.loads(body)["backend"] == "v1"
    assert headers["x-backend"] == "v1"
    assert "x-envoy-upstream-service-time" in headers
    req = b.requests[-1]
    assert req["path"] == "/hello?a=b"
    assert req["headers"]["host"] == "web.example.com"
    assert "x-request-id" in req["headers"]  # it went through Envoy

    assert gw.url(80, "x") == f"http://127.0.0.1:{gw.port(80)}/x"
    assert "backend::127.0.0.1:" in gw.admin("clusters")
    assert gw.config_dump()["configs"]
    assert gw.wait_for_stat("http.http.downstream_rq_2xx", lambda v: v >= 1) >= 1
    r = http_get(None, gw.readiness_port, "/healthz/ready")
    assert r.status == 200 and "LIVE" in r.text
    with pytest.raises(KeyError):
        gw.port(443)

    proc = gw.proc
    gw.stop()
    assert proc.poll() is not None
    assert not gw.running
    gw.stop()  # idempotent


def test_gateway_tls_passthrough_tcp_and_curl(backend_factory, gateway_factory, pki):
    b = backend_factory("web")
    echo = backend_factory.tcp("echo", greeting=b"echo-echo:")
    pt_dir, web_dir = pki["pt_dir"], pki["web_dir"]
    t = backend_factory.tls("passthrough", cert=pt_dir / "tls.crt", key=pt_dir / "tls.key")
    gw = gateway_factory.from_bootstrap(
        full_bootstrap(),
        ports=(80, 443, 31400),
        variables={
            "backend_port": b.port,
            "tls_backend_port": t.port,
            "echo_port": echo.port,
            "cert": web_dir / "tls.crt",
            "key": web_dir / "tls.key",
        },
    )
    # TLS termination: SNI picks the chain, Host is independent of SNI
    r = https_get(gw, 443, "/secure", host="anything.test", sni="web.example.com", ca=pki["ca_file"])
    assert r.status == 200 and r.json()["backend"] == "web"
    assert r.json()["headers"]["host"] == "anything.test"
    assert r.tls.subject_cn == "web.example.com" and r.tls.alpn == "http/1.1"

    hs = tls_handshake("127.0.0.1", gw.port(443), "web.example.com", ca=pki["ca_file"], alpn=["h2", "http/1.1"])
    assert hs.ok and hs.sans == ("web.example.com", "*.web.example.com") and hs.alpn == "http/1.1"
    assert hs.serial == pki["web"].serial
    # unknown SNI: no filter chain, the handshake fails and that is reported
    assert not tls_handshake("127.0.0.1", gw.port(443), "nope.example.com").ok

    # passthrough: the backend's own certificate
    hs = tls_handshake("127.0.0.1", gw.port(443), "passthrough.example.com", ca=pki["ca_file"])
    assert hs.ok and hs.subject_cn == "passthrough.example.com"
    assert tls_exchange(gw.port(443), "passthrough.example.com", b"hi\n", ca=pki["ca_file"]) == b"passthrough\n"

    # TCP proxy
    assert tcp_exchange(gw.port(31400), b"ping") == b"echo-echo:ping"

    # curl with --resolve, SNI = Host
    p = run_curl(["--resolve", f"web.example.com:{gw.port(443)}:127.0.0.1", "--cacert", pki["ca_file"],
                  "-o", "/dev/null", "-w", "%{http_code}", f"https://web.example.com:{gw.port(443)}/c"])
    assert p.returncode == 0, p.stderr
    assert p.stdout == "200"
    p = run_curl(["-i", "-H", "Host: curl.test", gw.url(80, "/c")])
    assert p.returncode == 0 and "x-backend: web" in p.stdout


def test_gateway_context_manager_cleans_up(backend_factory):
    b = backend_factory("v1")
    with Gateway.from_bootstrap(MINIMAL_BOOTSTRAP, variables={"backend_port": b.port}) as gw:
        assert http_get(gw, 80, "/").status == 200
        proc, workdir = gw.proc, gw.workdir
    assert proc.poll() is not None
    assert not workdir.exists()


def test_gateway_start_failure_carries_log(gateway_factory):
    gw = gateway_factory.from_bootstrap("static_resources: {clusters: [{name: x, type: NOPE}]}\n", start=False)
    with pytest.raises(GatewayStartError) as ei:
        gw.start()
    assert "exited" in str(ei.value)
    assert "envoy log" in str(ei.value)
    assert not gw.running


# --------------------------------------------------------------------------
# the render path, with a stub standing in for the compiler

STUB_CLI = textwrap.dedent(
    '''
    """Stands in for `python -m envoygen`: checks the harness's arguments."""
    import argparse, json, pathlib, sys, yaml

    p = argparse.ArgumentParser()
    p.add_argument("command")
    p.add_argument("-f", action="append", default=[])
    p.add_argument("-o")
    p.add_argument("-n", default="default")
    p.add_argument("--install-dir")
    p.add_argument("--port-map", action="append", default=[])
    p.add_argument("--admin-port", type=int)
    p.add_argument("--readiness-port", type=int)
    p.add_argument("--stats-port", type=int)
    a = p.parse_args()
    assert a.command == "render"
    docs = []
    for f in a.f:
        path = pathlib.Path(f)
        for x in sorted(path.rglob("*.yaml")) if path.is_dir() else [path]:
            for d in yaml.safe_load_all(x.read_text()):
                if d.get("fail"):
                    print(f"{x}:1: EG0101 unknown field [spec.fail]", file=sys.stderr)
                    sys.exit(1)
                docs.append(d)
    ports = dict(m.split("=") for m in a.port_map)
    out = pathlib.Path(a.o)
    out.mkdir(parents=True, exist_ok=True)
    template = pathlib.Path(__file__).with_name("template.yaml").read_text()
    values = {"admin_port": a.admin_port, "readiness_port": a.readiness_port,
              "port_80": ports["80"], "backend_port": docs[0]["backend_port"]}
    for k, v in values.items():
        template = template.replace("${%s}" % k, str(v))
    (out / "bootstrap.yaml").write_text(template)
    (out / "manifest.json").write_text(json.dumps(
        {"bootstrap": "bootstrap.yaml", "namespace": a.n, "install_dir": a.install_dir}))
    print("rendered", out)
    '''
)


@pytest.fixture
def stub_cli(tmp_path) -> list[str]:
    d = tmp_path / "stub"
    d.mkdir()
    (d / "stub.py").write_text(STUB_CLI)
    (d / "template.yaml").write_text(MINIMAL_BOOTSTRAP)
    return [sys.executable, str(d / "stub.py")]


def test_gateway_render_and_start_with_stub_cli(backend_factory, gateway_factory, stub_cli, tmp_path):
    b = backend_factory("stubbed")
    extra = tmp_path / "extra.yaml"
    extra.write_text("kind: Extra\n")
    gw = gateway_factory([f"backend_port: {b.port}\n", extra], ports=(80, 443), args=["-n", "ns1"], cli=stub_cli)
    assert gw.render_result.exit_code == 0
    cmd = gw.render_result.cmd
    assert cmd[len(stub_cli):len(stub_cli) + 5] == ["render", "-f", str(gw.input_dir), "-f", str(extra)]
    assert f"80={gw.port(80)}" in cmd and f"443={gw.port(443)}" in cmd
    assert cmd[-2:] == ["-n", "ns1"]
    assert gw.manifest["namespace"] == "ns1"
    assert gw.manifest["install_dir"] == str(gw.out_dir)
    assert gw.bootstrap_path == gw.out_dir / "bootstrap.yaml"
    assert gw.input_files[0].read_text() == f"backend_port: {b.port}\n"
    r = http_get(gw, 80, "/via-stub", host="h")
    assert r.status == 200 and r.headers["x-backend"] == "stubbed"


def test_gateway_render_failure(gateway_factory, stub_cli):
    gw = gateway_factory(
        """
        fail: true
        """,
        cli=stub_cli,
        start=False,
    )
    code, out, err, out_dir = gw.render()
    assert code == 1
    assert "EG0101" in err and str(gw.input_files[0]) in err
    assert out_dir == gw.out_dir
    with pytest.raises(RenderError) as ei:
        gw.start()
    assert ei.value.exit_code == 1 and "EG0101" in ei.value.stderr
    assert gw.proc is None


# --------------------------------------------------------------------------
# the conftest hook: a failing test shows the Envoy log

FAILING_TEST = textwrap.dedent(
    '''
    import sys
    sys.path.insert(0, {tests!r})
    from test_harness import MINIMAL_BOOTSTRAP

    def test_fails(backend_factory, gateway_factory):
        b = backend_factory("v1")
        gw = gateway_factory.from_bootstrap(MINIMAL_BOOTSTRAP, variables={{"backend_port": b.port}},
                                            log_level="info")
        assert False, "deliberate"

    def test_passes(backend_factory, gateway_factory):
        b = backend_factory("v1")
        gateway_factory.from_bootstrap(MINIMAL_BOOTSTRAP, variables={{"backend_port": b.port}},
                                       log_level="info")
    '''
)

CONFTEST_SHIM = textwrap.dedent(
    '''
    import importlib.util
    spec = importlib.util.spec_from_file_location("envoygen_tests_conftest", {path!r})
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    globals().update({{k: v for k, v in vars(mod).items() if not k.startswith("__")}})
    '''
)


@pytest.mark.slow
def test_failed_test_prints_envoy_log(tmp_path):
    tests = Path(__file__).resolve().parent
    (tmp_path / "conftest.py").write_text(CONFTEST_SHIM.format(path=str(tests / "conftest.py")))
    (tmp_path / "test_inner.py").write_text(FAILING_TEST.format(tests=str(tests)))
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "-c", "/dev/null", "--basetemp", str(tmp_path / "inner-tmp"), str(tmp_path / "test_inner.py")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    out = p.stdout
    assert p.returncode == 1, out + p.stderr
    assert "1 failed, 1 passed" in out
    assert "===== gateway bootstrap" in out
    assert "--- envoy log" in out
    assert "starting main dispatch loop" in out  # an info line from Envoy itself
    assert out.count("===== gateway bootstrap") == 1  # not for the passing test
