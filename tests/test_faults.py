"""Faults behind the gateway, as a client sees them (issue 13), with the stock Envoy and
real backends on 127.0.0.1.

- A backend that is down: 503 for the client, and Istio's response flags in the
  access log line (``UF`` upstream connection failure, ``URX`` retry limit
  exceeded: Istio's default policy retried twice first).
- A service with two endpoints, each restarted in turn during a bounded request
  loop. Istio's default retry policy
  (``connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes``,
  2 retries, other hosts preferred; pilot/pkg/networking/core/route/retry/retry.go)
  moves a refused connection to the other endpoint. With ROUND_ROBIN load
  balancing no request fails for a refused connection; with Istio's default
  LEAST_REQUEST a few percent of the requests made while an endpoint is down
  still do (measured, explained in ``test_backend_restarts_with_istio_defaults``).
  A request caught in the stopping backend's accept queue is reset, and Istio's
  default policy does not retry resets (``restart_each``). Since Istio 1.24 no status code
  is in the default retriable list (istio#52111), so a 503 from a backend is *not* retried.
- Outlier detection (DestinationRule ``consecutive5xxErrors``): an endpoint that
  starts answering 503 costs the client about that many failures, then it is
  ejected and all traffic goes to the healthy endpoint.
- Certificate rotation under a bounded HTTPS load: no failed request, and the new
  certificate is presented within 2 s (measured, printed).
- An in-flight request completes across ``docker stop`` of an image that
  ``envoygen build`` made from rendered input (the image's drain init), while
  new connections are refused (``test_rendered_image_drains_an_in_flight_request``;
  tests/test_image.py has the same for a hand-written bundle). ``envoygen run``
  and SIGTERM is tests/test_run_drain.py.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harness import http_get, run_envoygen, wait_until
from image_fixtures import base_image, docker_client, reaper  # noqa: F401 - fixtures
from test_tls_rotation import DEV_INTERMEDIATE, HOST as TLS_HOST, Hammer, copy_credentials, gateway_yaml, serial, \
    wait_for_serial
from envoygen.certs import mint_server

NS = "test"
HOST = "shop.example.com"
CLUSTER = f"outbound|80||shop.{NS}.svc.cluster.local"
ROTATION_BOUND_S = 2.0
LOOP_MAX_REQUESTS = 5_000
LOOP_MAX_SECONDS = 30.0


def shop_docs(ports: list[int], traffic_policy: dict | None = None) -> str:
    """Gateway (HTTP 80, HOST) → VirtualService → ServiceEntry ``shop`` with one STATIC
    endpoint per port on 127.0.0.1 (and a DestinationRule when ``traffic_policy``)."""
    docs: list[dict] = [
        {"apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": NS},
         "spec": {"selector": {"istio": "ingressgateway"},
                  "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": [HOST]}]}},
        {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "metadata": {"name": "shop", "namespace": NS},
         "spec": {"hosts": [HOST], "gateways": ["gw"], "http": [{"route": [{"destination": {"host": "shop"}}]}]}},
        {"apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntry", "metadata": {"name": "shop", "namespace": NS},
         "spec": {"hosts": [f"shop.{NS}.svc.cluster.local"],
                  "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                  "resolution": "STATIC",
                  "endpoints": [{"address": "127.0.0.1", "ports": {"http": p}} for p in ports]}},
    ]
    if traffic_policy is not None:
        docs.append({"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
                     "metadata": {"name": "shop", "namespace": NS},
                     "spec": {"host": "shop", "trafficPolicy": traffic_policy}})
    return yaml.safe_dump_all(docs, sort_keys=False)


def retries(gw) -> int:  # noqa: ANN001
    return sum(v for k, v in gw.stats("upstream_rq_retry$").items() if CLUSTER in k)


# --------------------------------------------------------------------------
# backend down


def test_backend_down_gives_503_with_istio_response_flags(backend_factory, gateway_factory, tmp_path) -> None:  # noqa: ANN001
    shop = backend_factory("shop")
    log = tmp_path / "access.log"
    gw = gateway_factory(shop_docs([shop.port]), ports=(80,), args=["--access-log", str(log)],
                         envoy_args=["--file-flush-interval-msec", "100"])
    assert http_get(gw, 80, "/up", host=HOST).status == 200
    shop.stop()  # the only endpoint goes away: connections are refused
    r = http_get(gw, 80, "/down", host=HOST)
    assert r.status == 503, r
    assert r.headers["server"] == "istio-envoy"
    assert r.body.startswith(b"upstream connect error") and r.body.endswith(b"remote connection failure"), r.body

    line = wait_until(lambda: next((ln for ln in log.read_text().splitlines() if '"GET /down ' in ln), None), 5,
                      message=f"no access log line for /down in {log}")
    # Istio's text format: ... %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% ...
    m = re.search(r'"GET /down HTTP/1\.1" (\d{3}) (\S+) (\S+) ', line)
    assert m, line
    code, flags, details = m.group(1), set(m.group(2).split(",")), m.group(3)
    assert code == "503"
    assert flags == {"UF", "URX"}, line  # connection failure, after Istio's 2 retries
    assert details.startswith("upstream_reset_before_response_started{remote_connection_failure"), line
    assert f'"127.0.0.1:{shop.port}" {CLUSTER} ' in line, line
    assert retries(gw) == 2  # the default policy's num_retries
    up = next(ln for ln in log.read_text().splitlines() if '"GET /up ' in ln)
    assert '" 200 - via_upstream ' in up, up  # no flag when all is well


# --------------------------------------------------------------------------
# a backend restarting during a request loop


class Loop:
    """``threads`` clients sending GETs back to back (new connection each), bounded in
    count and time; records every status, which backend answered (or the error), and
    when the request started and ended (``time.monotonic()``)."""

    def __init__(self, gw, threads: int = 3) -> None:  # noqa: ANN001
        self.gw = gw
        self.results: list[tuple[int, str, float, float]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        deadline = time.monotonic() + LOOP_MAX_SECONDS
        while not self._stop.is_set() and time.monotonic() < deadline and len(self.results) < LOOP_MAX_REQUESTS:
            began = time.monotonic()
            try:
                r = http_get(self.gw, 80, "/loop", host=HOST, timeout=5)
                status, who = r.status, r.headers.get("x-backend", r.text)
            except OSError as e:
                status, who = 0, repr(e)
            with self._lock:
                self.results.append((status, who, began, time.monotonic()))

    def __enter__(self) -> "Loop":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=LOOP_MAX_SECONDS + 10)

    def count(self) -> int:
        with self._lock:
            return len(self.results)

    def snapshot(self) -> list[tuple[int, str, float, float]]:
        with self._lock:
            return list(self.results)

    def wait_for_more(self, n: int) -> None:
        start = self.count()
        wait_until(lambda: self.count() >= start + n, 10, message="the request loop stalled")


REFUSED = "retried and the latest reset reason: remote connection failure"  # every attempt refused
TERMINATED = "reset reason: connection termination"  # the backend closed a connection holding the request


@dataclass
class Restarts:
    """Time windows (``time.monotonic()``) around each restart: ``stops`` from just before
    ``stop()`` to its return, ``down`` from just before ``stop()`` to the return of
    ``start()``. A request belongs to a window when its own span overlaps it: windows by
    time, not by result index, since a request in flight at a stop may complete after
    several newer ones when the machine is loaded."""

    stops: list[tuple[float, float]]
    down: list[tuple[float, float]]

    @staticmethod
    def _overlaps(windows: list[tuple[float, float]], began: float, ended: float) -> bool:
        return any(began <= hi and ended >= lo for lo, hi in windows)

    def at_a_stop(self, began: float, ended: float) -> bool:
        return self._overlaps(self.stops, began, ended)

    def while_down(self, began: float, ended: float) -> bool:
        return self._overlaps(self.down, began, ended)


def restart_each(loop: Loop, backends: tuple) -> Restarts:  # noqa: ANN001
    """Restart each backend in turn (same port) while ``loop`` runs.

    The restart is graceful, as a server stopped with SIGTERM does it: the listening socket
    is shut (new connections refused at once), requests being handled finish (0.2 s), then
    the connections close; the backends answer ``Connection: close``, so Envoy keeps no
    idle connection to them. Even so, a connection Envoy opened just before the listener
    shut, still in the kernel's accept queue, is reset: that request fails with "reset
    reason: connection termination", which Istio's default retry_on does not cover
    ("reset" is not in it). The tests allow those only at the moment of a stop.

    Checked at each restart: no request that began after ``stop()`` returned and ended
    before ``start()`` was called was answered by the stopped backend."""
    out = Restarts([], [])
    loop.wait_for_more(50)
    for backend in backends:
        stopping = time.monotonic()
        backend.stop(grace=0.2)
        stopped = time.monotonic()
        out.stops.append((stopping, stopped))
        loop.wait_for_more(100)  # traffic while it is down
        starting = time.monotonic()
        backend.start()
        started = time.monotonic()
        out.down.append((stopping, started))
        answered = [r for r in loop.snapshot() if r[1] == backend.name and r[2] > stopped and r[3] < starting]
        assert answered == [], f"{backend.name} answered while it was down: {answered[:3]}"
        wait_until(lambda: sum(1 for r in loop.snapshot() if r[1] == backend.name and r[2] > started) >= 5,  # noqa: B023
                   10, message=f"{backend.name} got no traffic after its restart")
    loop.wait_for_more(50)
    return out


def classify(loop: Loop, restarts: Restarts) -> dict[str, list]:
    """Failures by cause: refused on every attempt, reset at a stop, anything else."""
    out: dict[str, list] = {"refused": [], "reset at a stop": [], "other": []}
    for i, (status, why, began, ended) in enumerate(loop.results):
        if status == 200:
            continue
        if status == 503 and REFUSED in why and restarts.while_down(began, ended):
            out["refused"].append(i)
        elif status == 503 and TERMINATED in why and restarts.at_a_stop(began, ended):
            out["reset at a stop"].append(i)
        else:
            out["other"].append((i, status, why[:200]))
    return out


def while_down(loop: Loop, restarts: Restarts) -> int:
    """How many requests overlapped a down window."""
    return sum(1 for _, _, began, ended in loop.results if restarts.while_down(began, ended))


def test_backend_restarts_with_round_robin_fail_no_request(backend_factory, gateway_factory) -> None:  # noqa: ANN001
    """Two endpoints, each restarted in turn under 3 concurrent clients, with a
    DestinationRule choosing ROUND_ROBIN: every refused connection is retried by Istio's
    default policy on the other endpoint (the previous_hosts predicate makes the round robin
    pick it), so no request fails for a refused connection. Only a request caught in the
    stopping backend's accept queue may fail (see ``restart_each``), at most one per client
    thread and stop."""
    a, b = (backend_factory(n, headers={"connection": "close"}) for n in "ab")
    gw = gateway_factory(shop_docs([a.port, b.port], {"loadBalancer": {"simple": "ROUND_ROBIN"}}), ports=(80,))
    with Loop(gw) as loop:
        restarts = restart_each(loop, (a, b, a))
    failed = classify(loop, restarts)
    inside = while_down(loop, restarts)
    print(f"\n[faults/restart, ROUND_ROBIN] {len(loop.results)} requests ({inside} while an endpoint was down); "
          f"failed: {len(failed['refused'])} refused, {len(failed['reset at a stop'])} reset at a stop, "
          f"{len(failed['other'])} other; {retries(gw)} retries by Envoy; a: {a.count}, b: {b.count}")
    assert failed["refused"] == [] and failed["other"] == [], failed
    assert len(failed["reset at a stop"]) <= 3 * len(loop._threads)
    assert len(loop.results) >= 400
    assert retries(gw) >= 0.3 * inside, "few connections were refused: the restarts were not exercised"


def test_backend_restarts_with_istio_defaults(backend_factory, gateway_factory) -> None:  # noqa: ANN001
    """The same restarts with Istio's defaults only (no DestinationRule): the default retries
    save nearly every request, but not all. Measured finding: under concurrent load Envoy's
    LEAST_REQUEST (Istio's default) prefers the stopped endpoint (its refused attempts end at
    once, so it has the fewest active requests), so all three attempts of a few percent of
    the requests during the down window land on it (503 UF,URX; 2.4 % expected with 3
    clients, 0.75 x (0.75^6)^2). Outside the down windows nothing fails."""
    a, b = (backend_factory(n, headers={"connection": "close"}) for n in "ab")
    gw = gateway_factory(shop_docs([a.port, b.port]), ports=(80,))
    with Loop(gw) as loop:
        restarts = restart_each(loop, (a, b, a))
    failed = classify(loop, restarts)
    inside = while_down(loop, restarts)
    print(f"\n[faults/restart] {len(loop.results)} requests ({inside} while an endpoint was down); "
          f"failed: {len(failed['refused'])} refused, {len(failed['reset at a stop'])} reset at a stop, "
          f"{len(failed['other'])} other; {retries(gw)} retries by Envoy; a: {a.count}, b: {b.count}")
    assert failed["other"] == [], failed["other"][:5]  # nothing fails outside the down windows
    # without the retries about 3 in 4 of these would fail (the stopped endpoint is preferred)
    assert len(failed["refused"]) <= 0.10 * inside, (len(failed["refused"]), inside)
    assert len(failed["reset at a stop"]) <= 3 * len(loop._threads)
    assert retries(gw) >= 0.3 * inside, retries(gw)


# --------------------------------------------------------------------------
# outlier detection


def test_outlier_detection_ejects_an_endpoint_that_starts_failing(backend_factory, gateway_factory) -> None:  # noqa: ANN001
    good, flaky = backend_factory("good"), backend_factory("flaky")
    policy = {"loadBalancer": {"simple": "ROUND_ROBIN"},
              "outlierDetection": {"consecutive5xxErrors": 3, "interval": "1s", "baseEjectionTime": "60s",
                                   "maxEjectionPercent": 100}}
    gw = gateway_factory(shop_docs([good.port, flaky.port], policy), ports=(80,))
    before = [http_get(gw, 80, "/", host=HOST) for _ in range(20)]
    assert {r.status for r in before} == {200}
    assert flaky.count >= 3 and good.count >= 3  # both endpoints serve while healthy

    flaky.status = 503  # from now on every answer of this endpoint is a 503
    flaky_before = flaky.count
    seen = [http_get(gw, 80, "/", host=HOST) for _ in range(60)]
    failures = [r for r in seen if r.status != 200]
    assert all(r.status == 503 and r.headers.get("x-backend") == "flaky" for r in failures), failures[:3]
    # 503 is not retried by Istio's default policy: the client sees each one, about
    # consecutive5xxErrors of them (a few more may race the ejection across Envoy's workers)
    assert 3 <= len(failures) <= 6, [r.status for r in seen]
    assert flaky.count - flaky_before == len(failures)
    tail = seen[[i for i, r in enumerate(seen) if r.status != 200][-1] + 1:]
    assert len(tail) >= 40 and all(r.headers.get("x-backend") == "good" for r in tail)
    ejected = {k: v for k, v in gw.stats("ejections_enforced_consecutive_5xx").items() if CLUSTER in k}
    assert list(ejected.values()) == [1], ejected
    health = [ln for ln in gw.admin("clusters").splitlines()
              if ln.startswith(f"{CLUSTER}::127.0.0.1:{flaky.port}::health_flags")]
    assert health and "failed_outlier_check" in health[0], health


# --------------------------------------------------------------------------
# certificate rotation under load


def test_certificate_rotation_under_https_load(tmp_path: Path, backend_factory, gateway_factory) -> None:  # noqa: ANN001
    """Three rotations by rename (docs/rotation.md) while 4 clients make new TLS
    connections back to back: none fails; each new certificate is served within 2 s."""
    webapp = backend_factory("webapp")
    creds = copy_credentials(tmp_path, ["webapp-credential"])
    gw = gateway_factory(gateway_yaml("SIMPLE", webapp.port), ports=(443,), args=["--credentials-dir", str(creds)])
    live = gw.out_dir / "certs" / "webapp-credential"
    staging = gw.workdir / "staging"
    staging.mkdir()
    switches: list[float] = []
    served = [serial((live / "tls.crt").read_bytes())]
    with Hammer(gw) as h:
        time.sleep(0.5)
        for _ in range(3):
            new = mint_server([TLS_HOST], DEV_INTERMEDIATE)
            (staging / "tls.crt").write_bytes(new.cert)
            (staging / "tls.key").write_bytes(new.key)
            os.chmod(staging / "tls.key", 0o600)
            os.rename(staging / "tls.key", live / "tls.key")
            os.rename(staging / "tls.crt", live / "tls.crt")
            switches.append(wait_for_serial(gw, serial(new.cert), timeout=ROTATION_BOUND_S + 3))
            served.append(serial(new.cert))
            time.sleep(1.0)  # traffic on each new certificate
    print(f"\n[faults/rotation] {h.sent} HTTPS requests ({h.ok} ok, {len(h.failures)} failed); new certificate "
          f"served after {', '.join(f'{s:.3f}' for s in switches)} s (max {max(switches):.3f} s)")
    assert h.failures == [], h.failures[:5]
    assert h.sent >= 100
    assert max(switches) <= ROTATION_BOUND_S, switches
    assert h.all_serials() == set(served)



# --------------------------------------------------------------------------
# an in-flight request across SIGTERM, in an image built by the CLI

SLOW_HOST = "slow.example.com"


def slow_backend_docs() -> str:
    """Gateway → VirtualService → Kubernetes Service ``slow-backend`` (STRICT_DNS on its
    Docker network alias ``slow-backend.test.svc.cluster.local``, targetPort 9000)."""
    docs: list[dict] = [
        {"apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": NS},
         "spec": {"selector": {"istio": "ingressgateway"},
                  "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": [SLOW_HOST]}]}},
        {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "metadata": {"name": "slow", "namespace": NS},
         "spec": {"hosts": [SLOW_HOST], "gateways": ["gw"],
                  "http": [{"route": [{"destination": {"host": "slow-backend", "port": {"number": 80}}}]}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "slow-backend", "namespace": NS},
         "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 9000}]}},
    ]
    return yaml.safe_dump_all(docs, sort_keys=False)


@pytest.mark.docker
@pytest.mark.slow
def test_rendered_image_drains_an_in_flight_request(docker_client, base_image, reaper, tmp_path: Path) -> None:  # noqa: ANN001, F811
    """``envoygen build`` of a rendered input, run as a container; ``docker stop`` while a
    request takes 3 s at the backend: the request completes with 200, new connections are
    refused meanwhile, and the container exits 0 once it is done (well before the drain limit)."""
    from image_fixtures import (BACKEND_PORT, HTTP_PORT, READINESS_PORT, backend_bootstrap, make_network,
                                no_response, start_container, unique, wait_ready)
    from image_fixtures import http_get as plain_get
    from image_fixtures import wait_until as poll

    net = make_network(reaper)
    cfg = tmp_path / "backend"
    cfg.mkdir()
    cfg.chmod(0o755)  # read by uid 101 in the backend container
    (cfg / "backend.yaml").write_text(backend_bootstrap())
    (cfg / "backend.yaml").chmod(0o644)
    start_container(reaper, base_image, command=["-c", "/config/backend.yaml", "--disable-hot-restart"],
                    network=net, aliases=(f"slow-backend.{NS}.svc.cluster.local",), volumes={str(cfg): "/config"})
    assert BACKEND_PORT == 9000
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "gw.yaml").write_text(slow_backend_docs())
    tag = reaper.image(f"envoygen-test/{unique('drain')}:test")
    p = run_envoygen(["build", "-f", str(tmp_path / "in"), "-t", tag], timeout=600)
    assert p.returncode == 0, p.stderr
    gw = start_container(reaper, tag, publish=(HTTP_PORT, READINESS_PORT), network=net)
    wait_ready(gw)
    port, host = gw.port(HTTP_PORT), {"Host": SLOW_HOST}
    poll(lambda: plain_get(port, "/ping", headers=host).status == 200, timeout=20, what="the backend via the gateway")

    result: dict = {}

    def in_flight() -> None:
        try:
            result["reply"] = plain_get(port, "/work", headers={**host, "x-envoy-fault-delay-request": "3000"},
                                        timeout=30)
        except Exception as exc:  # noqa: BLE001
            result["error"] = exc

    request = threading.Thread(target=in_flight, daemon=True)
    request.start()
    time.sleep(1.0)  # the request is at the backend now
    assert request.is_alive()
    stop_info: dict = {}

    def stop() -> None:
        t0 = time.monotonic()
        gw.wrapped.stop(timeout=30)  # SIGTERM; SIGKILL only after 30 s
        stop_info["took"] = time.monotonic() - t0

    stopper = threading.Thread(target=stop, daemon=True)
    stopper.start()
    refused_after = poll(lambda: no_response(port), timeout=3, interval=0.05, what="new connections refused")
    assert request.is_alive()  # still in flight while new connections are refused
    request.join(timeout=15)
    stopper.join(timeout=40)
    reply = result.get("reply")
    assert reply is not None, f"in-flight request failed: {result.get('error')!r}\n{gw.logs()}"
    assert (reply.status, reply.body) == (200, b"slow backend\n")
    assert reply.elapsed >= 2.9
    assert gw.wrapped.wait(timeout=10)["StatusCode"] == 0
    assert 1.5 < stop_info["took"] < 4.5, stop_info
    print(f"\n[faults/sigterm image] new connections refused {refused_after:.2f} s after SIGTERM; the in-flight "
          f"request answered 200 after {reply.elapsed:.2f} s; container stopped {stop_info['took']:.2f} s after SIGTERM")
    assert "drained after" in gw.logs()
