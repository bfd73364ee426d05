"""Envoy's admin API is unreachable from every listener open to the network.

The readiness (15021) and Prometheus (15090) listeners bind 0.0.0.0 and are the
only ones that forward to admin. Each must let exactly one admin endpoint
through (GET /healthz/ready -> /ready, GET /stats/prometheus with its query),
whatever the encoding of the path: dot segments, percent-encoded dots, encoded
slashes and backslashes, doubled slashes, absolute-form request targets, with
GET and POST, over HTTP/1.1 and h2c. Admin itself (loopback only) is used to
prove the probes would have been seen: its ``/ready`` must still say LIVE after
every POST to ``healthcheck/fail``, and ``config_dump`` markers never come back.
"""

from __future__ import annotations

import http.client

import pytest

from conftest import BackendFactory, GatewayFactory
from harness import LOCALHOST, http_get, run_curl
from test_http_smoke import GW

# What admin answers and the gateway never should, per admin endpoint.
ADMIN_MARKERS = (
    b"admin commands are",          # admin's own 404 page lists its commands
    b"command_line_options",        # /server_info
    b"type.googleapis.com/envoy.admin",  # /config_dump, /clusters?format=json
    b"cluster_manager.",            # /stats (plain)
    b"prometheus_stats::",          # /clusters
    b"HEALTHCHECK_FAIL",            # /server_info state after healthcheck/fail
)

TARGETS = [  # admin endpoints reached by traversal in the bug report, and worse ones
    "config_dump", "server_info", "healthcheck/fail", "quitquitquit", "clusters", "stats",
]


def traversals(prefix: str, target: str) -> list[str]:
    """Ways to climb out of ``prefix`` to ``/target`` that admin (or a sloppy
    normaliser) resolves: plain, percent-encoded dots, encoded slashes and
    backslashes, doubled slashes, dot-slash prefixes, query and matrix tricks."""
    up = prefix.count("/")
    return [
        f"{prefix}/" + "../" * up + target,
        f"{prefix}/" + "%2E%2E/" * up + target,
        f"{prefix}/" + "%2e%2e/" * up + target,
        f"{prefix}/" + ".%2E/" * up + target,
        f"{prefix}/" + "..%2F" * up + target,
        f"{prefix}/" + "..%2f" * up + target,
        f"{prefix}/" + "..%5C" * up + target,
        f"{prefix}/" + "..\\" * up + target,
        f"{prefix}/./" + "../" * up + target,
        "/" + f"{prefix}/" + "../" * up + target,
        f"{prefix}//" + "../" * (up + 1) + target,
        f"{prefix};/" + "../" * up + target,
        f"{prefix}%2F" + "..%2F" * up + target,
        f"{prefix}/" + "%252E%252E/" * up + target,
        f"/{target}",
        f"{prefix}/{target}",
        f"{prefix}{target}",
    ]


def raw_request(port: int, method: str, target: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Send one HTTP/1.1 request with ``target`` byte for byte (http.client
    does not normalise the request target); return (status, head + body)."""
    conn = http.client.HTTPConnection(LOCALHOST, port, timeout=timeout)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", f"{LOCALHOST}:{port}")
        conn.putheader("Content-Length", "0")
        conn.endheaders()
        r = conn.getresponse()
        head = "".join(f"{k.lower()}: {v}\r\n" for k, v in r.getheaders()).encode("latin-1")
        return r.status, head + b"\r\n" + (r.read() if method != "HEAD" else b"")
    finally:
        conn.close()


def admin_live(gw) -> bool:  # noqa: ANN001
    return gw.admin("ready").strip() == "LIVE"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """One gateway for the module (the probes are many; Envoy starts once)."""
    backends, gateways = BackendFactory(), GatewayFactory(tmp_path_factory)
    failed = True
    try:
        webapp = backends("webapp")
        yield gateways(GW.format(port=webapp.port), ports=(80,), name="admin-exposure")
        failed = False
    finally:
        gateways.finish(failed)
        backends.stop_all()


def test_the_one_allowed_endpoint_per_listener_still_answers(gateway) -> None:
    gw = gateway
    r = http_get(None, gw.readiness_port, "/healthz/ready")
    assert r.status == 200 and r.body.strip() == b"LIVE"
    r = http_get(None, gw.stats_port, "/stats/prometheus")
    assert r.status == 200 and b"# TYPE envoy_" in r.body
    # its query reaches admin: the filter narrows the output
    r = http_get(None, gw.stats_port, "/stats/prometheus?filter=server.live")
    assert r.status == 200 and b"envoy_server_live" in r.body and b"envoy_cluster_" not in r.body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD", "OPTIONS"])
def test_other_methods_on_the_allowed_paths_are_refused(gateway, method: str) -> None:
    gw = gateway
    for port, path in ((gw.stats_port, "/stats/prometheus"), (gw.readiness_port, "/healthz/ready")):
        status, data = raw_request(port, method, path)
        assert status == 405, (method, path, data[:300])
        assert b"allow: GET\r\n" in data
    assert admin_live(gw)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("which", ["stats", "readiness", "gateway"])
def test_no_traversal_reaches_admin(gateway, method: str, which: str) -> None:
    gw = gateway
    port, prefix = {
        "stats": (gw.stats_port, "/stats/prometheus"),
        "readiness": (gw.readiness_port, "/healthz/ready"),
        "gateway": (gw.port_map[80], "/stats/prometheus"),  # a server listener too
    }[which]
    tried = 0
    for target in TARGETS:
        if target == "quitquitquit" and method == "POST":
            continue  # covered below: it would end the module's gateway if it got through
        for path in traversals(prefix, target) + [f"http://{LOCALHOST}{p}" for p in traversals(prefix, target)[:2]]:
            status, data = raw_request(port, method, path)
            tried += 1
            for marker in ADMIN_MARKERS:
                assert marker not in data, f"{method} {path} on {which} answered by admin ({marker!r})"
            if which != "gateway":
                assert status in (400, 404, 405), f"{method} {path} on {which}: {status}\n{data[:300]!r}"
        # a POST to healthcheck/fail that got through would flip readiness
        assert admin_live(gw), f"{method} .../{target} on {which} reached admin"
        assert http_get(None, gw.readiness_port, "/healthz/ready").status == 200
    assert tried >= len(TARGETS) * 10


def test_quitquitquit_by_post_never_reaches_admin(gateway) -> None:
    gw = gateway
    for port, prefix in ((gw.stats_port, "/stats/prometheus"), (gw.readiness_port, "/healthz/ready")):
        for path in traversals(prefix, "quitquitquit"):
            status, _ = raw_request(port, "POST", path)
            assert status in (400, 404, 405), (path, status)
    assert gw.proc is not None and gw.proc.poll() is None, "Envoy exited: quitquitquit got through"
    assert admin_live(gw)


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
def test_curl_path_as_is(gateway, http2: bool) -> None:
    """As an outsider would try it: curl --path-as-is (and h2c prior knowledge)."""
    gw = gateway
    extra = ["--http2-prior-knowledge"] if http2 else ["--http1.1"]
    probes = [
        (gw.stats_port, "GET", "/stats/prometheus/../../config_dump"),
        (gw.readiness_port, "GET", "/healthz/ready/%2E%2E/server_info"),
        (gw.stats_port, "POST", "/stats/prometheus/../../healthcheck/fail"),
        (gw.readiness_port, "POST", "/healthz/ready/../../healthcheck/fail"),
        (gw.readiness_port, "POST", "/healthz/ready/%2e%2e/%2e%2e/healthcheck/fail"),
    ]
    for port, method, path in probes:
        p = run_curl([*extra, "--path-as-is", "-X", method, "-o", "-", "-w", "\n%{http_code}",
                      f"http://{LOCALHOST}:{port}{path}"])
        assert p.returncode == 0, p.stderr
        body, _, code = p.stdout.rpartition("\n")
        assert code in ("400", "404", "405"), (method, path, code, body[:300])
        assert not any(m.decode() in body for m in ADMIN_MARKERS), (method, path, body[:300])
    assert admin_live(gw)
    # and the allowed ones work the same way through curl
    p = run_curl([*extra, "-o", "/dev/null", "-w", "%{http_code}", f"http://{LOCALHOST}:{gw.readiness_port}/healthz/ready"])
    assert p.stdout == "200"


def test_the_probes_would_have_been_seen(gateway) -> None:
    """The detectors are real: the same traversal straight to admin's loopback
    port does reach config_dump (admin resolves ``..`` itself), so a gateway
    listener that forwarded it would be caught by the markers above."""
    gw = gateway
    status, data = raw_request(gw.admin_port, "GET", "/stats/prometheus/../../config_dump")
    assert status == 200 and b"type.googleapis.com/envoy.admin" in data
