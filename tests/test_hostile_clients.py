"""Hostile clients at the edge (issue 13): what a client sees, and what the backend saw.

- Headers dribbled a byte at a time never reach the backend and the connection
  is cut by the request-headers timeout (10 s by default; Istio sets none).
- A client that sends its headers at once is not affected, even when it then
  takes longer than the timeout to send its body.
- Oversized (> 60 KiB) and too many (> 100) request headers get 431 from the
  gateway and never reach the backend (Envoy's defaults, which Istio keeps).
- Conflicting framing (Content-Length with Transfer-Encoding, two different
  Content-Lengths, obfuscated Transfer-Encoding) gets 400, the connection is
  closed, and neither the request nor a request smuggled behind it reaches the
  backend (raw sockets; the backend records every request it gets).
- TLS 1.0 and 1.1 clients are refused (Envoy's server minimum is TLS 1.2;
  Istio's gateway sets none unless the Gateway or meshConfig.tlsDefaults asks,
  pilot/pkg/networking/core/listener.go applyServerTLSSettings).
- Header names with underscores are forwarded (Istio's behaviour, the default).
"""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Sequence

import pytest

from harness import LOCALHOST, http_get
from test_http_smoke import GW
from test_tls_rotation import CERTS, HOST, ROOT_CA, gateway_yaml

CRLF = b"\r\n"

TIMEOUT_S = 10.0  # translate/hardening.py DEFAULT_HTTP.request_headers_timeout


def test_dribbled_headers_are_cut_off_by_the_request_headers_timeout(backend_factory, gateway_factory) -> None:
    webapp = backend_factory("webapp")
    gw = gateway_factory(GW.format(port=webapp.port), ports=(80,))
    before = len(webapp.requests)
    request = b"GET /slow HTTP/1.1\r\nHost: webapp.istioinaction.io\r\n" + b"x-pad: " + b"a" * 400 + b"\r\n\r\n"
    start = time.monotonic()
    sent, closed_at, answer = 0, None, b""
    with socket.create_connection((LOCALHOST, gw.port_map[80]), timeout=2) as s:
        s.settimeout(0.25)
        for byte in request[:-4]:  # never the final blank line, one byte every 50 ms, bounded
            if time.monotonic() - start > TIMEOUT_S + 8:
                break
            try:
                s.sendall(bytes([byte]))
                sent += 1
            except OSError:
                closed_at = time.monotonic() - start
                break
            try:
                answer += s.recv(4096)  # an answer, or b"" when Envoy closed the connection
                closed_at = time.monotonic() - start
                break
            except socket.timeout:
                pass
            time.sleep(0.05)
    assert closed_at is not None, f"still open after {time.monotonic() - start:.1f} s and {sent} bytes"
    assert TIMEOUT_S - 1 <= closed_at <= TIMEOUT_S + 3, closed_at
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert len(webapp.requests) == before, "the backend saw the dribbled request"
    assert gw.stats("http.outbound_0.0.0.0_").get(f"http.outbound_0.0.0.0_{gw.port_map[80]}.downstream_rq_header_timeout", 0) >= 1


def test_headers_sent_at_once_are_not_affected(backend_factory, gateway_factory) -> None:
    webapp = backend_factory("webapp")
    gw = gateway_factory(GW.format(port=webapp.port), ports=(80,))
    assert http_get(gw, 80, "/", host="webapp.istioinaction.io").status == 200
    # headers complete at once, body trickling for longer than the headers timeout: no 408
    body = b"x" * 24
    head = (f"POST /upload HTTP/1.1\r\nHost: webapp.istioinaction.io\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    start = time.monotonic()
    with socket.create_connection((LOCALHOST, gw.port_map[80]), timeout=20) as s:
        s.sendall(head)
        for i in range(len(body)):  # 24 bytes over ~12 s
            s.sendall(body[i:i + 1])
            time.sleep(0.5)
        data = b""
        for _ in range(1000):  # bounded reads
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert time.monotonic() - start > TIMEOUT_S
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert webapp.requests[-1]["path"] == "/upload"


# --------------------------------------------------------------------------
# raw HTTP/1.1 on one connection


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send ``data`` on a fresh connection, read until Envoy closes it (or ``timeout``).
    Returns (everything read, whether the connection was closed by the gateway)."""
    out, closed = b"", False
    deadline = time.monotonic() + timeout
    with socket.create_connection((LOCALHOST, port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass  # refused mid-send: what was answered is still readable below
        for _ in range(10_000):  # bounded
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except (TimeoutError, socket.timeout):
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            out += chunk
    return out, closed


def statuses(answer: bytes) -> list[int]:
    """Status codes of every HTTP/1.1 response in ``answer`` (pipelined answers included)."""
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


def head(path: str, extra: Sequence[tuple[str, str]] = ()) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}"] + [f"{k}: {v}" for k, v in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture
def plain_gw(backend_factory, gateway_factory):  # noqa: ANN001, ANN201
    webapp = backend_factory("webapp")
    gw = gateway_factory(GW.format(port=webapp.port), ports=(80,))
    return gw, webapp


# --------------------------------------------------------------------------
# header limits: Envoy's defaults as Istio leaves them (60 KiB, 100 headers)


@pytest.mark.parametrize(
    ("case", "extra", "want"),
    [
        ("50 KiB of headers", [(f"x-pad-{i}", "a" * 1000) for i in range(50)], 200),
        ("61 KiB in one header", [("x-big", "a" * 61 * 1024)], 431),
        ("64 KiB over many headers", [(f"x-pad-{i}", "a" * 1024) for i in range(64)], 431),
        ("90 headers", [(f"x-h-{i}", "v") for i in range(90)], 200),
        ("101 headers", [(f"x-h-{i}", "v") for i in range(100)], 431),  # + Host = 101
        ("150 headers", [(f"x-h-{i}", "v") for i in range(150)], 431),
    ],
)
def test_header_limits(plain_gw, case: str, extra: list[tuple[str, str]], want: int) -> None:  # noqa: ANN001
    gw, webapp = plain_gw
    answer, _ = raw_exchange(gw.port(80), head(f"/limits/{len(extra)}", extra))
    assert statuses(answer)[:1] == [want], (case, answer[:300])
    paths = [r["path"] for r in webapp.requests]
    if want == 431:
        assert paths == [], f"{case}: the backend saw {paths}"
        assert b"server: istio-envoy" in answer.lower()
    else:
        assert paths == [f"/limits/{len(extra)}"]


# --------------------------------------------------------------------------
# request smuggling: conflicting framing is refused, nothing behind it reaches the backend

SMUGGLED = f"GET /smuggled HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


def _post(framing: list[str], body: bytes) -> bytes:
    lines = ["POST /front HTTP/1.1", f"Host: {HOST}", *framing]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


SMUGGLING = {
    # CL.TE: the front end would use Content-Length, a back end the chunked framing
    "content-length and chunked (CL.TE)": _post(
        [f"Content-Length: {len(b'0' + CRLF * 2 + SMUGGLED)}", "Transfer-Encoding: chunked"], b"0\r\n\r\n" + SMUGGLED),
    # TE.CL: the chunk hides the second request from a Content-Length reader
    "chunked and content-length (TE.CL)": _post(
        ["Transfer-Encoding: chunked", "Content-Length: 4"],
        f"{len(SMUGGLED):x}\r\n".encode() + SMUGGLED + b"\r\n0\r\n\r\n"),
    "two different content-lengths": _post(["Content-Length: 0", "Content-Length: 44"], SMUGGLED),
    "chunked, then identity": _post(
        ["Transfer-Encoding: chunked", "Transfer-Encoding: identity", f"Content-Length: {len(SMUGGLED)}"], SMUGGLED),
    "space before the colon": _post(["Transfer-Encoding : chunked", f"Content-Length: {len(SMUGGLED)}"], SMUGGLED),
}


def test_pipelined_requests_reach_the_backend(plain_gw) -> None:  # noqa: ANN001
    """The control: two honest pipelined requests on one connection both arrive, so the
    refusals below are not the counting's blind spot."""
    gw, webapp = plain_gw
    answer, _ = raw_exchange(gw.port(80), _post(["Content-Length: 0"], b"") + SMUGGLED, timeout=2)
    assert statuses(answer) == [200, 200], answer[:400]
    assert [r["path"] for r in webapp.requests] == ["/front", "/smuggled"]


@pytest.mark.parametrize("case", sorted(SMUGGLING))
def test_conflicting_framing_is_refused_and_nothing_is_smuggled(plain_gw, case: str) -> None:  # noqa: ANN001
    gw, webapp = plain_gw
    answer, closed = raw_exchange(gw.port(80), SMUGGLING[case])
    assert statuses(answer) == [400], (case, answer[:400])
    assert closed, "the connection stays open after a framing error"
    time.sleep(0.3)  # anything forwarded would have arrived by now
    assert webapp.requests == [], [r["path"] for r in webapp.requests]
    assert http_get(gw, 80, "/after", host=HOST).status == 200  # the gateway itself is fine


# --------------------------------------------------------------------------
# underscores in header names: forwarded, as Istio does (--profile edge rejects them)


def test_headers_with_underscores_are_forwarded_by_default(plain_gw) -> None:  # noqa: ANN001
    gw, webapp = plain_gw
    r = http_get(gw, 80, "/u", host=HOST, headers=[("x_custom_id", "42"), ("x-dashed", "1")])
    assert r.status == 200
    seen = webapp.requests[-1]["headers"]
    assert seen["x_custom_id"] == "42"
    assert seen["x-dashed"] == "1"


# --------------------------------------------------------------------------
# TLS below 1.2 is refused (Envoy's server default; Istio sets no minimum unless asked)


def _tls_client(max_version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ROOT_CA))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this OpenSSL offer TLS 1.0/1.1 at all
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = max_version
    return ctx


def _handshake(port: int, ctx: ssl.SSLContext) -> str:
    """The negotiated version, or the error's text."""
    try:
        with socket.create_connection((LOCALHOST, port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname=HOST) as s:
            return s.version() or "?"
    except (ssl.SSLError, OSError) as e:
        return f"refused: {e!r}"


def _https_gateway(gateway_factory, backend_factory, tls_extra: str = ""):  # noqa: ANN001, ANN202
    webapp = backend_factory("webapp")
    (doc,) = gateway_yaml("SIMPLE", webapp.port)
    doc = doc.replace("credentialName: webapp-credential}", "credentialName: webapp-credential" + tls_extra + "}")
    return gateway_factory(doc, ports=(443,), args=["--credentials-dir", str(CERTS)])


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["TLSv1.0", "TLSv1.1"])
def test_tls_below_1_2_is_refused(gateway_factory, backend_factory, version: ssl.TLSVersion) -> None:  # noqa: ANN001
    gw = _https_gateway(gateway_factory, backend_factory)
    refused = _handshake(gw.port(443), _tls_client(version))
    assert refused.startswith("refused") and "PROTOCOL_VERSION" in refused, refused  # refused for its version
    assert _handshake(gw.port(443), _tls_client(ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
    assert _handshake(gw.port(443), _tls_client(ssl.TLSVersion.TLSv1_3)) == "TLSv1.3"
    if shutil.which("openssl"):
        flag = "-tls1" if version == ssl.TLSVersion.TLSv1 else "-tls1_1"
        p = subprocess.run(["openssl", "s_client", flag, "-cipher", "DEFAULT:@SECLEVEL=0", "-connect",
                            f"{LOCALHOST}:{gw.port(443)}", "-servername", HOST],
                           input="", capture_output=True, text=True, timeout=10)
        assert p.returncode != 0, p.stdout[-500:]
        assert "BEGIN CERTIFICATE" not in p.stdout


def test_tls_1_1_client_is_served_when_the_gateway_asks_for_it(gateway_factory, backend_factory) -> None:  # noqa: ANN001
    """The control for the test above: this client really can speak TLS 1.1, and a Gateway
    with ``minProtocolVersion: TLSV1_1`` and a cipher TLS 1.1 can use accepts it (so the refusal
    above is the gateway's; Envoy's default ciphers are all AEAD, which TLS 1.1 cannot use)."""
    gw = _https_gateway(gateway_factory, backend_factory,
                        ", minProtocolVersion: TLSV1_1, cipherSuites: [ECDHE-ECDSA-AES128-SHA, ECDHE-ECDSA-AES128-GCM-SHA256]")
    assert _handshake(gw.port(443), _tls_client(ssl.TLSVersion.TLSv1_1)) == "TLSv1.1"
