"""``--profile edge`` (translate/hardening.py, docs/hardening.md): the settings an Istio user would
observe, with the values of Istio's own EDGE connection-settings profile
(pilot/pkg/networking/core/connection_settings.go applyEdgeProfileDefaults), seen by clients of the
stock Envoy and in its config_dump; the default profile keeps Istio's behaviour for each.
"""

from __future__ import annotations

import socket
import struct
import time

import pytest

from harness import http_get, run_envoygen
from image_fixtures import base_image, docker_client, reaper, unique  # noqa: F401 - fixtures
from test_edge_defaults import _docs, _dynamic, _gateway_listeners
from test_http_policies import H

KIB = 1024


@pytest.fixture
def pair(backend_factory, gateway_factory):  # noqa: ANN001, ANN201
    """The same input rendered twice: (backend, default gateway, edge gateway)."""
    app = backend_factory("app")
    docs = _docs(("app", [app.port]))
    default = gateway_factory(docs, ports=(80,), name="default")
    edge = gateway_factory(docs, ports=(80,), name="edge", args=["--profile", "edge"])
    return app, default, edge


def test_headers_with_underscores_forwarded_by_default_rejected_under_edge(pair) -> None:  # noqa: ANN001
    app, default, edge = pair
    r = http_get(default, 80, "/app/u", host=H, headers={"x_client_id": "42"})
    assert r.status == 200
    assert app.requests[-1]["headers"]["x_client_id"] == "42"  # Istio forwards them

    before = app.count
    r = http_get(edge, 80, "/app/u", host=H, headers={"x_client_id": "42"})
    assert r.status == 400, (r.status, r.body)
    assert app.count == before, "the backend saw a request the edge profile refuses"
    stats = edge.stats("underscores")
    assert sum(v for k, v in stats.items() if k.endswith("requests_rejected_with_underscores_in_headers")) == 1, stats
    # the same header with dashes is fine under edge
    assert http_get(edge, 80, "/app/u", host=H, headers={"x-client-id": "42"}).status == 200


def test_slashes_merged_and_escaped_slashes_redirected_under_edge(pair) -> None:  # noqa: ANN001
    app, default, edge = pair
    assert http_get(default, 80, "/app//a///b", host=H).status == 200
    assert app.requests[-1]["path"] == "/app//a///b"  # Istio: merge_slashes false
    assert http_get(edge, 80, "/app//a///b", host=H).status == 200
    assert app.requests[-1]["path"] == "/app/a/b"

    assert http_get(default, 80, "/app/a%2Fb", host=H).status == 200
    assert app.requests[-1]["path"] == "/app/a%2Fb"  # Istio: KEEP_UNCHANGED
    before = app.count
    r = http_get(edge, 80, "/app/a%2Fb", host=H)
    assert r.status in (301, 302, 307, 308) and r.headers["location"].endswith("/app/a/b"), (r.status, r.headers)
    assert app.count == before


def test_edge_values_in_config_dump(pair) -> None:  # noqa: ANN001
    _, default, edge = pair
    [listener] = _gateway_listeners(edge)
    assert listener["per_connection_buffer_limit_bytes"] == 32 * KIB
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["common_http_protocol_options"] == {"idle_timeout": "3600s", "headers_with_underscores_action": "REJECT_REQUEST"}
    assert hcm["http2_protocol_options"] == {"max_concurrent_streams": 100, "initial_stream_window_size": 65536,
                                             "initial_connection_window_size": 1048576}
    assert hcm["stream_idle_timeout"] == "300s" and hcm["request_timeout"] == "300s"
    assert hcm["request_headers_timeout"] == "10s"
    assert hcm["merge_slashes"] is True and hcm["path_with_escaped_slashes_action"] == "UNESCAPE_AND_REDIRECT"
    assert hcm["use_remote_address"] is True and hcm["normalize_path"] is True
    clusters = [e["cluster"] for e in _dynamic(edge.config_dump(), "ClustersConfigDump")]
    assert all(c["per_connection_buffer_limit_bytes"] == 32 * KIB for c in clusters if c["name"].startswith("outbound|"))

    [dlistener] = _gateway_listeners(default)
    dhcm = dlistener["filter_chains"][0]["filters"][0]["typed_config"]
    assert "common_http_protocol_options" not in dhcm and "http2_protocol_options" not in dhcm
    assert dhcm["stream_idle_timeout"] == "0s" and "request_timeout" not in dhcm  # as Istio's gateways
    assert dhcm.get("path_with_escaped_slashes_action", "KEEP_UNCHANGED") == "KEEP_UNCHANGED"


def _h2_server_settings(port: int) -> tuple[dict[int, int], int]:
    """Speak h2c (prior knowledge) just far enough to read the server's SETTINGS and its
    connection WINDOW_UPDATE: ({setting id: value}, connection window increment)."""
    settings: dict[int, int] = {}
    increment = 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + struct.pack(">I", 0)[1:] + bytes([4, 0]) + struct.pack(">I", 0))
        data = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (settings and increment):
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
            while len(data) >= 9:
                length = int.from_bytes(data[:3], "big")
                if len(data) < 9 + length:
                    break
                ftype, flags, stream = data[3], data[4], int.from_bytes(data[5:9], "big") & 0x7FFFFFFF
                payload, data = data[9:9 + length], data[9 + length:]
                if ftype == 4 and not flags & 1:  # SETTINGS, not an ACK
                    for i in range(0, len(payload), 6):
                        settings[int.from_bytes(payload[i:i + 2], "big")] = int.from_bytes(payload[i + 2:i + 6], "big")
                elif ftype == 8 and stream == 0:  # connection WINDOW_UPDATE
                    increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
    return settings, increment


MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE = 0x3, 0x4


def test_http2_limits_announced_under_edge(pair) -> None:  # noqa: ANN001
    """An h2c client is told 100 concurrent streams, a 64 KiB stream window and a 1 MiB connection
    window under edge; by default Envoy 1.40's own (1024 streams, 16 MiB stream and 24 MiB connection
    windows), as Istio leaves them."""
    _, default, edge = pair
    settings, increment = _h2_server_settings(edge.port_map[80])
    assert settings[MAX_CONCURRENT_STREAMS] == 100 and settings[INITIAL_WINDOW_SIZE] == 64 * KIB, settings
    assert increment + 65535 == 1024 * KIB, increment  # the connection window starts at 65535 (RFC 9113)
    settings, increment = _h2_server_settings(default.port_map[80])
    assert settings[MAX_CONCURRENT_STREAMS] == 1024 and settings[INITIAL_WINDOW_SIZE] == 16 * KIB * KIB, settings
    assert increment + 65535 == 24 * KIB * KIB, increment


def test_profile_is_checked_and_reaches_validate(tmp_path) -> None:
    src = tmp_path / "in.yaml"
    src.write_text(_docs(("app", [8080])))
    p = run_envoygen(["render", "-f", src, "-o", tmp_path / "out", "--profile", "hard"])
    assert p.returncode == 2 and "--profile" in p.stderr, p.stderr
    assert not (tmp_path / "out").exists()
    p = run_envoygen(["validate", "-f", src, "--profile", "edge"])
    assert p.returncode == 0 and "Envoy accepted the configuration" in p.stderr, p.stderr
    p = run_envoygen(["ir", "-f", src, "--profile", "edge"])
    assert p.returncode == 0 and '"headers_with_underscores_action": "REJECT_REQUEST"' in p.stdout


@pytest.mark.docker
@pytest.mark.slow
def test_build_bakes_the_profile_and_heap_limit(docker_client, base_image, reaper, tmp_path) -> None:  # noqa: ANN001, F811
    from test_build_stdin import BUILD_TIMEOUT_S, REPO, read_from_image

    tag = reaper.image(f"envoygen-test/{unique('edge')}:test")
    flags = ["--profile", "edge", "--max-heap", "1Gi", "--bootstrap-format", "yaml"]  # the YAML form, on request
    p = run_envoygen(["build", "-f", "samples/coolstore", "-t", tag, *flags], cwd=REPO, timeout=BUILD_TIMEOUT_S)
    assert p.returncode == 0, p.stderr
    baked = read_from_image(docker_client, tag, "/etc/envoy/envoy.yaml")
    assert b"headers_with_underscores_action: REJECT_REQUEST" in baked
    assert b"max_heap_size_bytes: 1073741824" in baked
    p = run_envoygen(["render", "-f", "samples/coolstore", "-o", tmp_path / "r", *flags], cwd=REPO)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "r" / "envoy.yaml").read_bytes() == baked


def test_run_applies_the_profile(backend_factory, tmp_path) -> None:  # noqa: ANN001
    import signal

    from test_run import YAML
    from test_run_drain import Run

    app = backend_factory("app")
    src = tmp_path / "in.yaml"
    src.write_text(YAML.format(port=app.port))
    run = Run(src, "--profile", "edge")
    try:
        assert http_get(None, run.http, "/", host="run.example.com", headers={"x_client_id": "1"}).status == 400
        assert http_get(None, run.http, "/", host="run.example.com", headers={"x-client-id": "1"}).status == 200
        assert app.count == 1
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(timeout=15) == 0
    finally:
        run.stop()
