"""Fixtures and helpers for the Docker image tests (tests/test_image.py).

Network rule: the tests reach servers on 127.0.0.1 only (container ports are
published on 127.0.0.1) or on Docker networks they create. Every wait is
bounded. Every container, network and image a test makes is removed by the
fixture that made it.

A hand-made bundle stands in for the compiler's output: ``write_bundle`` writes
a small Envoy bootstrap with

* ``0.0.0.0:8080`` plain HTTP: ``/slow/...`` to a backend (when one is given),
  everything else a direct 200 response;
* ``0.0.0.0:8443`` HTTPS with a certificate served through file-based SDS
  (``sds/demo.yaml`` → ``certs/demo/tls.crt``, ``tls.key`` mode 0600), as the
  compiler's bundles do;
* ``0.0.0.0:15021`` readiness (``/healthz/ready`` → admin ``/ready``) and
  ``0.0.0.0:15090`` Prometheus (``/stats/prometheus``), through a static
  cluster to the admin endpoint on ``127.0.0.1:15000``;

and ``Dockerfile`` rendered from ``templates/Dockerfile.j2`` with the same
context as the compiler's render stage.
"""

from __future__ import annotations

import datetime as _dt
import http.client
import json
import os
import shutil
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
LOCALHOST = "127.0.0.1"

HTTP_PORT = 8080
HTTPS_PORT = 8443
READINESS_PORT = 15021
STATS_PORT = 15090
ADMIN_PORT = 15000
BACKEND_PORT = 9000
INSTALL_DIR = "/etc/envoy"
TEST_REPO = "envoygen-test"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_tool(tool: str, package: str) -> None:
    """Skip the test without ``tool`` on PATH, except under CI=true (.ci/run installs it), where that fails."""
    if shutil.which(tool) is None:
        if in_ci():
            pytest.fail(f"{tool} is missing (Debian: apt-get install {package}; .ci/run installs it)")
        pytest.skip(f"needs {tool}")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------------------
# Engine and cleanup
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_client():
    """The Docker SDK client; skip without an engine, except in CI (CI=true)."""
    try:
        import docker

        client = docker.from_env(timeout=15)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine"
        msg = f"no Docker engine answers ({type(exc).__name__}: {exc})"
        if in_ci():
            pytest.fail(f"{msg}; CI=true requires one (.ci/docker.sh starts it)")
        pytest.skip(msg)
    client.api.timeout = 600
    yield client
    client.close()


class Reaper:
    """Remembers containers, networks and image tags; removes them all."""

    def __init__(self, client) -> None:  # noqa: ANN001
        self.client = client
        self.containers: list[Any] = []
        self.networks: list[Any] = []
        self.images: list[str] = []

    def image(self, ref: str) -> str:
        self.images.append(ref)
        return ref

    def cleanup(self) -> None:
        for c in reversed(self.containers):
            try:
                c.stop()  # testcontainers: remove(force=True)
            except Exception:  # noqa: BLE001
                pass
        self.containers.clear()
        for n in reversed(self.networks):
            try:
                n.remove()
            except Exception:  # noqa: BLE001
                pass
        self.networks.clear()
        for ref in reversed(self.images):
            try:
                self.client.images.remove(ref, force=True, noprune=False)
            except Exception:  # noqa: BLE001
                pass
        self.images.clear()


@pytest.fixture
def reaper(docker_client) -> Iterator[Reaper]:  # noqa: ANN001
    r = Reaper(docker_client)
    try:
        yield r
    finally:
        r.cleanup()


@pytest.fixture(scope="session")
def base_image(docker_client) -> Iterator[str]:  # noqa: ANN001
    """The local base image, built if absent; removed at the end if this session
    built it (set ENVOYGEN_TEST_KEEP_IMAGES=1 to keep it)."""
    from docker.errors import ImageNotFound

    from envoygen import image

    try:
        docker_client.images.get(image.BASE_TAG)
        existed = True
    except ImageNotFound:
        existed = False
    lines: list[str] = []
    tag = image.ensure_local_base_image(docker_client, lines.append)
    yield tag
    if not existed and os.environ.get("ENVOYGEN_TEST_KEEP_IMAGES") != "1":
        try:
            docker_client.images.remove(tag, force=True)
        except Exception:  # noqa: BLE001
            pass


# ---------------------------------------------------------------------------
# Bundle
# ---------------------------------------------------------------------------


def render_dockerfile(*, drop: tuple[str, ...] = (), **overrides: Any) -> str:
    """templates/Dockerfile.j2 rendered as the compiler's render stage does
    (StrictUndefined, ``j`` JSON-encodes scalars)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )

    def j(value: Any) -> str:
        if isinstance(value, jinja2.Undefined):
            str(value)  # StrictUndefined raises UndefinedError here
        return json.dumps(value)

    env.filters["j"] = j
    ctx: dict[str, Any] = {
        "install_dir": INSTALL_DIR,
        "bootstrap_file": "envoy.yaml",
        "ports": sorted({HTTP_PORT, HTTPS_PORT, READINESS_PORT, STATS_PORT}),
        "readiness_port": READINESS_PORT,
        "admin_port": ADMIN_PORT,
        "envoy_version": "1.40.0",
    }
    ctx.update(overrides)
    for key in drop:
        del ctx[key]
    return env.get_template("Dockerfile.j2").render(**ctx)


@dataclass
class Cert:
    cert_pem: bytes
    key_pem: bytes
    common_name: str


def self_signed(common_name: str) -> Cert:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Cert(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        common_name,
    )


def write_cert_dir(directory: Path, cert: Cert, *, key_mode: int = 0o600) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tls.crt").write_bytes(cert.cert_pem)
    (directory / "tls.key").write_bytes(cert.key_pem)
    os.chmod(directory / "tls.crt", 0o644)
    os.chmod(directory / "tls.key", key_mode)
    return directory


def _http_listener(name: str, port: int, routes: str, *, tls: bool = False) -> str:
    transport = ""
    if tls:
        transport = f"""
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificate_sds_secret_configs:
            - name: kubernetes://demo
              sds_config:
                path_config_source:
                  path: {INSTALL_DIR}/sds/demo.yaml
                  watched_directory: {{path: {INSTALL_DIR}/sds}}
                resource_api_version: V3"""
    return f"""
  - name: {name}
    address: {{socket_address: {{address: 0.0.0.0, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          server_name: istio-envoy
          route_config:
            name: {name}
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:{routes}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router{transport}"""


def _cluster(name: str, host: str, port: int, *, dns: bool) -> str:
    kind = "STRICT_DNS" if dns else "STATIC"
    return f"""
  - name: {name}
    type: {kind}
    connect_timeout: 2s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{socket_address: {{address: {host}, port_value: {port}}}}}"""


def gateway_bootstrap(*, backend: str | None = None) -> str:
    """The gateway's envoy.yaml; ``backend`` is ``host:port`` behind ``/slow/``."""
    main_routes = ""
    clusters = _cluster("admin", LOCALHOST, ADMIN_PORT, dns=False)
    if backend:
        host, port = backend.rsplit(":", 1)
        main_routes += """
              - match: {prefix: /slow/}
                route: {cluster: backend, timeout: 60s}"""
        clusters += _cluster("backend", host, int(port), dns=True)
    main_routes += """
              - match: {prefix: /}
                direct_response: {status: 200, body: {inline_string: "hello from the gateway\\n"}}"""
    readiness = """
              - match: {path: /healthz/ready}
                route: {cluster: admin, prefix_rewrite: /ready}"""
    stats = """
              - match: {path: /stats/prometheus}
                route: {cluster: admin}"""
    return f"""# Hand-made test bundle (tests/image_fixtures.py), not compiler output.
node: {{id: envoygen-test, cluster: envoygen-test}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {ADMIN_PORT}}}}}
static_resources:
  listeners:{_http_listener("0.0.0.0_8080", HTTP_PORT, main_routes)}{_http_listener("0.0.0.0_8443", HTTPS_PORT, main_routes, tls=True)}{_http_listener("readiness", READINESS_PORT, readiness)}{_http_listener("prometheus", STATS_PORT, stats)}
  clusters:{clusters}
"""


def write_bundle(out: Path, *, backend: str | None = None, cert: Cert | None = None) -> Path:
    """A hand-made bundle in ``out`` (see the module docstring)."""
    cert = cert or self_signed("gateway.test")
    out.mkdir(parents=True, exist_ok=True)
    (out / "envoy.yaml").write_text(gateway_bootstrap(backend=backend))
    (out / "sds").mkdir(exist_ok=True)
    (out / "sds" / "demo.yaml").write_text(
        "resources:\n"
        '- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n'
        "  name: kubernetes://demo\n"
        "  tls_certificate:\n"
        f"    certificate_chain: {{filename: {INSTALL_DIR}/certs/demo/tls.crt}}\n"
        f"    private_key: {{filename: {INSTALL_DIR}/certs/demo/tls.key}}\n"
        f"    watched_directory: {{path: {INSTALL_DIR}/certs/demo}}\n"
    )
    write_cert_dir(out / "certs" / "demo", cert)
    (out / "Dockerfile").write_text(render_dockerfile())
    (out / "manifest.json").write_text(
        json.dumps({"generator": "tests/image_fixtures.py", "bootstrap": "envoy.yaml"}, indent=2) + "\n"
    )
    return out


def backend_bootstrap() -> str:
    """A slow backend: Envoy whose fault filter delays each request by the
    milliseconds in ``x-envoy-fault-delay-request``, then answers 200."""
    return f"""node: {{id: slow-backend, cluster: slow-backend}}
static_resources:
  listeners:
  - name: backend
    address: {{socket_address: {{address: 0.0.0.0, port_value: {BACKEND_PORT}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: backend
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                direct_response: {{status: 200, body: {{inline_string: "slow backend\\n"}}}}
          http_filters:
          - name: envoy.filters.http.fault
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
              max_active_faults: 100
              delay:
                header_delay: {{}}
                percentage: {{numerator: 100, denominator: HUNDRED}}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""


# ---------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------


@dataclass
class Running:
    """A started container with its published 127.0.0.1 ports."""

    container: Any  # testcontainers DockerContainer
    ports: dict[int, int] = field(default_factory=dict)
    started_at: float = 0.0

    @property
    def wrapped(self):  # noqa: ANN201 - docker.models.containers.Container
        return self.container.get_wrapped_container()

    def port(self, container_port: int) -> int:
        return self.ports[container_port]

    def logs(self) -> str:
        try:
            return self.wrapped.logs(stdout=True, stderr=True).decode(errors="replace")
        except Exception as exc:  # noqa: BLE001
            return f"<no logs: {exc}>"


def start_container(
    reaper: Reaper,
    image_ref: str,
    *,
    publish: tuple[int, ...] = (),
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
    network: Any = None,
    aliases: tuple[str, ...] = (),
    volumes: dict[str, str] | None = None,
) -> Running:
    """Start ``image_ref`` with ``publish`` ports bound to 127.0.0.1 (random host
    ports), optionally on a test-made ``network``."""
    from testcontainers.core.container import DockerContainer

    c = DockerContainer(image_ref)
    for port in publish:
        # (host ip, host port): never 0.0.0.0; None picks a free port.
        c.ports[f"{port}/tcp"] = (LOCALHOST, None)  # type: ignore[assignment]
    for k, v in (env or {}).items():
        c.with_env(k, v)
    if command is not None:
        c.with_command(command)
    if network is not None:
        c.with_network(network)
        if aliases:
            c.with_network_aliases(*aliases)
    for host, target in (volumes or {}).items():
        c.with_volume_mapping(host, target, "ro")
    reaper.containers.append(c)
    started = time.monotonic()
    c.start()
    running = Running(c, started_at=started)
    api = c.get_wrapped_container().client.api
    for port in publish:
        bindings = api.port(c.get_container_id(), port)
        assert bindings, f"port {port} of {image_ref} is not published"
        assert bindings[0]["HostIp"] in (LOCALHOST, ""), bindings
        running.ports[port] = int(bindings[0]["HostPort"])
    return running


def make_network(reaper: Reaper):  # noqa: ANN201
    from testcontainers.core.network import Network

    net = Network()
    net.create()
    reaper.networks.append(net)
    return net


# ---------------------------------------------------------------------------
# HTTP on 127.0.0.1
# ---------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float


def http_get(port: int, path: str = "/", *, headers: dict[str, str] | None = None, timeout: float = 5.0,
             tls_ca: bytes | None = None, server_name: str | None = None) -> Reply:
    """GET http(s)://127.0.0.1:port/path; raises OSError/HTTPException when no
    response comes."""
    start = time.monotonic()
    conn = http.client.HTTPConnection(LOCALHOST, port, timeout=timeout)
    if tls_ca is not None:
        # TLS verified against server_name while connecting to 127.0.0.1.
        ctx = ssl.create_default_context(cadata=tls_ca.decode())
        raw = socket.create_connection((LOCALHOST, port), timeout=timeout)
        try:
            conn.sock = ctx.wrap_socket(raw, server_hostname=server_name)
        except BaseException:
            raw.close()
            raise
    try:
        conn.request("GET", path, headers={"Host": server_name or "gateway.test", **(headers or {})})
        resp = conn.getresponse()
        body = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body, time.monotonic() - start)
    finally:
        conn.close()


def peer_certificate(port: int, server_name: str) -> bytes:
    """The DER certificate the TLS listener on 127.0.0.1:port presents."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((LOCALHOST, port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der
    return der


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str = "") -> float:
    """Poll ``predicate`` until true; return the seconds it took. Bounded."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        try:
            if predicate():
                return time.monotonic() - start
        except (OSError, http.client.HTTPException):
            pass
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(interval)


def wait_ready(running: Running, *, timeout: float = 30.0) -> float:
    """Wait for readiness 200; return seconds since the container was started."""
    port = running.port(READINESS_PORT)
    try:
        wait_until(lambda: http_get(port, "/healthz/ready", timeout=1).status == 200,
                   timeout=timeout, what="readiness 200")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\ncontainer logs:\n{running.logs()}") from None
    return time.monotonic() - running.started_at


def no_response(port: int, path: str = "/") -> bool:
    """True when a new request on 127.0.0.1:port gets no HTTP response (the
    listener is closed: docker-proxy accepts, then drops the connection)."""
    try:
        http_get(port, path, timeout=2)
    except (OSError, http.client.HTTPException):
        return True
    return False
