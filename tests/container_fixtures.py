"""Fixtures for the testcontainers suite (tests/test_containers.py).

One gateway image per test module, built with the real CLI
(``envoygen build -f samples/gateway-suite -t envoygen-test/gw:<random> ...``,
extra arguments from ``samples/gateway-suite/render.args``), started with
testcontainers' ``DockerContainer`` next to backend containers:

* every container runs on a Docker network the fixture creates; the backends
  carry the network alias the Istio YAML's Service resolves to
  (``webapp`` in ``istioinaction`` → ``webapp.istioinaction.svc.cluster.local``,
  a STRICT_DNS cluster in the bundle);
* the backends are the local base image ``envoygen/envoy-base:1.40.0`` with a
  static Envoy JSON config (mounted read-only) that answers with a body and a
  header naming the backend; the TCP one echoes, the TLS one terminates TLS with
  a certificate of its own (a CA minted for the test);
* only the gateway publishes ports, on 127.0.0.1 only (random host ports);
* readiness: a testcontainers wait strategy polling ``/healthz/ready`` on the
  readiness port until it answers 200 (bounded);
* everything made (containers, the network, the gateway image) is removed at
  the end of the module, also when a step fails; logs are printed for failed
  tests (the ``suite`` fixture's teardown).

Reuses tests/image_fixtures.py (engine skip/CI-fail logic, ``Reaper``,
``base_image``). Ryuk is disabled: cleanup is ours.
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import CertAuthority, run_envoygen  # noqa: E402
from image_fixtures import (  # noqa: E402
    LOCALHOST,
    REPO,
    TEST_REPO,
    Reaper,
    base_image,  # noqa: F401 - fixture
    docker_client,  # noqa: F401 - fixture
    unique,
)

SAMPLE = REPO / "samples" / "gateway-suite"
CERTS = REPO / "certs"
DEV_ROOT_CA = CERTS / "_ca" / "root.crt"
CLIENT_CERT = CERTS / "webapp-client" / "tls.crt"
CLIENT_KEY = CERTS / "webapp-client" / "tls.key"

#: Gateway server port -> the port Envoy binds in the container (envoygen's
#: default mapping: Istio's ingress Service, 80→8080, 443→8443; others as is).
SERVER_PORTS = {80: 8080, 443: 8443, 9443: 9443, 9444: 9444, 31400: 31400}
READINESS_PORT = 15021
STATS_PORT = 15090

NAMESPACE = "istioinaction"
#: Backend name -> (container port, kind); the alias is <name>.<ns>.svc.cluster.local.
BACKENDS = {
    "webapp": (8080, "http"),
    "catalog": (3000, "http"),
    "tcp-echo": (9000, "tcp"),
    "my-nginx": (8443, "tls"),
}
PASSTHROUGH_HOST = "nginx.example.com"

BUILD_TIMEOUT_S = 300
READY_TIMEOUT_S = 30
LOG_TAIL = 200


def service_alias(name: str) -> str:
    return f"{name}.{NAMESPACE}.svc.cluster.local"


def render_args() -> list[str]:
    """``samples/gateway-suite/render.args`` as test_golden.py reads it."""
    f = SAMPLE / "render.args"
    if not f.exists():
        return []
    return [ln.strip() for ln in f.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


# ---------------------------------------------------------------------------
# Backend Envoy configs (JSON, as samples/coolstore/demo/)
# ---------------------------------------------------------------------------

_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def _hcm(name: str) -> dict[str, Any]:
    """An HTTP connection manager answering every request itself: 200, a body
    naming the backend, and headers naming it and echoing what arrived
    (``x-backend-path``, ``-authority``, ``-proto``, ``-xfcc``, ``-request-id``,
    ``-xff``, ``-attempts``; ``x-backend-peer`` is the address the connection
    came from, the gateway container's)."""
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": _HCM,
            "stat_prefix": name,
            # Keep the x-forwarded-client-cert the gateway sends over plain HTTP (Envoy's
            # default, SANITIZE, would drop it before the echo below).
            "forward_client_cert_details": "ALWAYS_FORWARD_ONLY",
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}],
            "route_config": {
                "virtual_hosts": [{
                    "name": name,
                    "domains": ["*"],
                    "response_headers_to_add": [
                        {"header": {"key": "x-backend", "value": name}},
                        {"header": {"key": "x-backend-path", "value": "%REQ(:PATH)%"}},
                        {"header": {"key": "x-backend-authority", "value": "%REQ(:AUTHORITY)%"}},
                        # Headers the gateway adds or strips, as the backend got
                        # them (absent when the request had none).
                        {"header": {"key": "x-backend-proto", "value": "%REQ(x-forwarded-proto)%"}},
                        {"header": {"key": "x-backend-xfcc", "value": "%REQ(x-forwarded-client-cert)%"}},
                        {"header": {"key": "x-backend-request-id", "value": "%REQ(x-request-id)%"}},
                        {"header": {"key": "x-backend-xff", "value": "%REQ(x-forwarded-for)%"}},
                        {"header": {"key": "x-backend-attempts", "value": "%REQ(x-envoy-attempt-count)%"}},
                        {"header": {"key": "x-backend-peer", "value": "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%"}},
                    ],
                    "routes": [{
                        "match": {"prefix": "/"},
                        "direct_response": {"status": 200, "body": {"inline_string": f"backend {name}\n"}},
                    }],
                }],
            },
        },
    }


def _listener(name: str, port: int, filters: list[dict[str, Any]], transport: dict[str, Any] | None = None) -> dict:
    chain: dict[str, Any] = {"filters": filters}
    if transport:
        chain["transport_socket"] = transport
    return {
        "name": name,
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
        "filter_chains": [chain],
    }


def backend_config(name: str, port: int, kind: str, cert_dir: str = "/config/tls") -> dict[str, Any]:
    """A static Envoy bootstrap for one backend: ``http`` answers with its name,
    ``tcp`` echoes what it receives, ``tls`` is ``http`` behind TLS with the
    certificate in ``cert_dir`` (tls.crt, tls.key)."""
    if kind == "tcp":
        filters = [{"name": "envoy.filters.network.echo",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo"}}]
        listener = _listener(name, port, filters)
    elif kind == "tls":
        transport = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "common_tls_context": {
                    "tls_certificates": [{
                        "certificate_chain": {"filename": f"{cert_dir}/tls.crt"},
                        "private_key": {"filename": f"{cert_dir}/tls.key"},
                    }],
                    "alpn_protocols": ["http/1.1"],
                },
            },
        }
        listener = _listener(name, port, [_hcm(name)], transport)
    else:
        listener = _listener(name, port, [_hcm(name)])
    return {"node": {"id": name, "cluster": name}, "static_resources": {"listeners": [listener]}}


# ---------------------------------------------------------------------------
# Readiness wait strategy
# ---------------------------------------------------------------------------


def _wait_strategy_class():  # noqa: ANN202
    from testcontainers.core.wait_strategies import HttpWaitStrategy

    class ReadinessOn127(HttpWaitStrategy):
        """HttpWaitStrategy for ``GET /healthz/ready`` == 200, always on
        127.0.0.1 and the published host port (never a proxy, never another
        interface), with plain http.client."""

        def _build_url(self, container) -> str:  # noqa: ANN001
            host_port = published_port(container, self._port)
            return f"http://{LOCALHOST}:{host_port}{self._path}"

        def _try_http_request(self, url: str, headers: dict[str, str], ssl_context: Any) -> bool:  # noqa: ARG002
            port = int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
            conn = http.client.HTTPConnection(LOCALHOST, port, timeout=1)
            try:
                conn.request("GET", self._path)
                return conn.getresponse().status in self._status_codes
            except (OSError, http.client.HTTPException):
                return False
            finally:
                conn.close()

    return ReadinessOn127


def readiness_wait(port: int = READINESS_PORT, *, timeout: float = READY_TIMEOUT_S):  # noqa: ANN201
    strategy = _wait_strategy_class()(port, "/healthz/ready")
    return strategy.with_startup_timeout(int(timeout)).with_poll_interval(0.1)


def published_port(container, port: int) -> int:  # noqa: ANN001
    """The 127.0.0.1 host port Docker published ``port/tcp`` of a started
    testcontainers container on (asserts it is bound to 127.0.0.1 only)."""
    api = container.get_wrapped_container().client.api
    bindings = api.port(container.get_container_id(), port)
    assert bindings, f"port {port} is not published"
    assert all(b["HostIp"] == LOCALHOST for b in bindings), f"port {port} published beyond 127.0.0.1: {bindings}"
    return int(bindings[0]["HostPort"])


# ---------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------


@dataclass
class Box:
    """A started container."""

    name: str
    container: Any  # testcontainers DockerContainer
    ports: dict[int, int] = field(default_factory=dict)

    @property
    def wrapped(self):  # noqa: ANN201 - docker.models.containers.Container
        return self.container.get_wrapped_container()

    def logs(self, *, stdout: bool = True, stderr: bool = True, tail: int | str = "all") -> str:
        try:
            return self.wrapped.logs(stdout=stdout, stderr=stderr, tail=tail).decode(errors="replace")
        except Exception as exc:  # noqa: BLE001
            return f"<no logs: {exc}>"

    def describe(self, tail: int = LOG_TAIL) -> str:
        try:
            self.wrapped.reload()
            state = self.wrapped.attrs.get("State", {})
            status = f"{state.get('Status')} (exit {state.get('ExitCode')})"
        except Exception as exc:  # noqa: BLE001
            status = f"<unknown: {exc}>"
        return f"----- container {self.name}: {status}; last {tail} log lines -----\n{self.logs(tail=tail)}"


def start_box(
    reaper: Reaper,
    name: str,
    image_ref: str,
    *,
    network: Any,
    aliases: tuple[str, ...] = (),
    publish: tuple[int, ...] = (),
    command: list[str] | None = None,
    volumes: dict[str, str] | None = None,
    wait: Any = None,
) -> Box:
    """Start ``image_ref`` on ``network`` (with ``aliases``), publishing
    ``publish`` on 127.0.0.1 only. The container is registered for removal
    before it is started, so a failed start or wait leaves nothing behind."""
    from testcontainers.core.container import DockerContainer

    c = DockerContainer(image_ref)
    for port in publish:
        c.ports[f"{port}/tcp"] = (LOCALHOST, None)  # type: ignore[assignment]  # 127.0.0.1, free port
    if command is not None:
        c.with_command(command)
    c.with_network(network)
    if aliases:
        c.with_network_aliases(*aliases)
    for host, target in (volumes or {}).items():
        c.with_volume_mapping(host, target, "ro")
    c.with_kwargs(labels={"io.envoygen.test": "test_containers"})
    if wait is not None:
        c.waiting_for(wait)
    reaper.containers.append(c)
    c.start()
    box = Box(name, c)
    for port in publish:
        box.ports[port] = published_port(c, port)
    return box


def make_network(reaper: Reaper):  # noqa: ANN201
    from testcontainers.core.network import Network

    net = Network()
    net.create()
    reaper.networks.append(net)
    return net


def _readable_by_envoy(path: Path) -> None:
    """uid 101 (the images' user) must read the mounted files: chown when we
    can, else make them world-readable."""
    for p in [path, *path.rglob("*")]:
        try:
            os.chown(p, 101, 101)
        except PermissionError:
            p.chmod(0o755 if p.is_dir() else 0o644)
        if p.is_dir():
            p.chmod(0o755)


# ---------------------------------------------------------------------------
# The suite: one image, one network, backends, one gateway
# ---------------------------------------------------------------------------


@dataclass
class Suite:
    tag: str
    build_seconds: float
    build_output: str
    gateway: Box
    backends: dict[str, Box]
    passthrough_ca: Path  # the CA of the my-nginx backend's own certificate
    other_client_cert: Path  # a client certificate from a CA the gateway does not trust
    other_client_key: Path
    image_labels: dict[str, str]
    image_exposed: set[str]
    ready_seconds: float

    def port(self, server_port: int) -> int:
        """Host port on 127.0.0.1 for a Gateway server port (80, 443, ...)."""
        return self.gateway.ports[SERVER_PORTS[server_port]]

    @property
    def readiness_port(self) -> int:
        return self.gateway.ports[READINESS_PORT]

    def stdout(self) -> str:
        return self.gateway.logs(stdout=True, stderr=False)

    def stderr(self) -> str:
        return self.gateway.logs(stdout=False, stderr=True)

    def describe_for_failure(self) -> str:
        parts = [f"===== gateway image {self.tag} (built in {self.build_seconds:.1f} s) ====="]
        parts.append(self.gateway.describe())
        parts.extend(b.describe(tail=40) for b in self.backends.values())
        return "\n".join(parts)


def _build(tag: str) -> tuple[float, str]:
    args = ["build", "-f", str(SAMPLE.relative_to(REPO)), "-t", tag, *render_args()]
    start = time.monotonic()
    p = run_envoygen(args, cwd=REPO, timeout=BUILD_TIMEOUT_S)
    took = time.monotonic() - start
    out = f"$ envoygen {shlex.join(args)}  (exit {p.returncode}, {took:.1f} s)\n{p.stdout}\n{p.stderr}"
    assert p.returncode == 0, out
    return took, out


@pytest.fixture(scope="module")
def suite_env(docker_client, base_image, tmp_path_factory) -> Iterator[Suite]:  # noqa: ANN001, F811
    """Build the gateway image once for the module and run it with its backends."""
    reaper = Reaper(docker_client)
    boxes: list[Box] = []
    build: Future | None = None
    try:
        tag = reaper.image(f"{TEST_REPO}/gw:{unique('suite')}")
        # The image builds while the backends start (they need only the base image).
        pool = ThreadPoolExecutor(max_workers=1)
        build = pool.submit(_build, tag)
        pool.shutdown(wait=False)

        work = tmp_path_factory.mktemp("containers")
        cfg = work / "config"
        cfg.mkdir()
        ca = CertAuthority("gateway-suite passthrough backend CA")
        ca.issue(PASSTHROUGH_HOST).write(cfg / "tls", ca=False)
        passthrough_ca = ca.write_ca(work / "passthrough-ca.crt")
        other = CertAuthority("gateway-suite untrusted client CA").issue("intruder", client=True).write(work / "intruder")
        for name, (port, kind) in BACKENDS.items():
            (cfg / f"{name}.json").write_text(json.dumps(backend_config(name, port, kind), indent=2) + "\n")
        _readable_by_envoy(cfg)

        net = make_network(reaper)
        # Backends first: the gateway's STRICT_DNS clusters resolve their
        # aliases at start (and only every 60 s after a failure).
        backends: dict[str, Box] = {}
        for name in BACKENDS:
            backends[name] = start_box(
                reaper, name, base_image, network=net, aliases=(service_alias(name),),
                command=["-c", f"/config/{name}.json", "--disable-hot-restart", "--log-level", "warn"],
                volumes={str(cfg): "/config"})
            boxes.append(backends[name])

        build_seconds, build_output = build.result(timeout=BUILD_TIMEOUT_S + 30)
        img = docker_client.images.get(tag)
        started = time.monotonic()
        gateway = start_box(
            reaper, "gateway", tag, network=net,
            publish=(*sorted(SERVER_PORTS.values()), READINESS_PORT, STATS_PORT),
            wait=readiness_wait())
        boxes.insert(0, gateway)
        ready_seconds = time.monotonic() - started
        suite = Suite(
            tag=tag, build_seconds=build_seconds, build_output=build_output, gateway=gateway, backends=backends,
            passthrough_ca=passthrough_ca, other_client_cert=other / "tls.crt", other_client_key=other / "tls.key",
            image_labels=dict(img.labels or {}), image_exposed=set(img.attrs["Config"].get("ExposedPorts") or {}),
            ready_seconds=ready_seconds,
        )
        print(f"\n[containers] image {tag} built in {build_seconds:.1f} s; gateway ready {ready_seconds:.1f} s "
              "after start", file=sys.stderr)
        yield suite
    except BaseException:
        for b in boxes:
            print(b.describe(), file=sys.stderr)
        raise
    finally:
        if build is not None:  # never remove the tag while a build may still create it
            try:
                build.result(timeout=BUILD_TIMEOUT_S + 30)
            except BaseException:  # noqa: BLE001 - already reported, or the build's own failure
                pass
        reaper.cleanup()


@pytest.fixture
def suite(request: pytest.FixtureRequest, suite_env: Suite) -> Iterator[Suite]:
    """The module's running suite; prints the container logs when the test failed."""
    from conftest import _test_failed

    yield suite_env
    if _test_failed(request.node):
        print(suite_env.describe_for_failure())
