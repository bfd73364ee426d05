"""Hostile clients at the edge (issue 13, first cases): what a client sees.

- Headers dribbled a byte at a time never reach the backend and the connection
  is cut by the request-headers timeout (10 s by default; Istio sets none).
- A client that sends its headers at once is not affected, even when it then
  takes longer than the timeout to send its body.
"""

from __future__ import annotations

import socket
import time

from harness import LOCALHOST, http_get
from test_http_smoke import GW

TIMEOUT_S = 10.0  # translate/gateway.py REQUEST_HEADERS_TIMEOUT


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
