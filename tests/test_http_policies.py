"""Route timeout and retry policy end to end, plus the exact rendered policy (Istio fidelity).

Istio reference: route.go setTimeout (timeout 0s = disabled unless the VS sets one),
route/retry/retry.go DefaultPolicy/ConvertPolicy (2 retries on
connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes; no 503 since
istio#52111 / 1.23; previous_hosts predicate; host_selection_retry_max_attempts 5);
istio-semantics.md 2.4.
"""

from __future__ import annotations

import time
from typing import Any

import yaml
from harness import free_port, http_get

NS = "test"
H = "policy.example.com"


# ----------------------------------------------------------------- helpers
def gateway_doc() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": NS},
        "spec": {"selector": {"istio": "ingressgateway"},
                 "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]},
    }


def vs_doc(http: list[dict], hosts: list[str] | None = None, name: str = "policy") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"hosts": hosts or [H], "gateways": ["gw"], "http": http},
    }


def se_doc(name: str, ports: list[int]) -> dict[str, Any]:
    """One service on port 80 whose endpoints are 127.0.0.1 at each of ``ports``."""
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "hosts": [f"{name}.{NS}.svc.cluster.local"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "resolution": "STATIC",
            "endpoints": [{"address": "127.0.0.1", "ports": {"http": p}} for p in ports],
        },
    }


def to(name: str) -> list[dict]:
    return [{"destination": {"host": name}}]


def dump(*docs: dict) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def get(gw, path: str, **kw: Any) -> tuple:  # noqa: ANN001
    return tuple(http_get(gw, 80, path, host=H, **kw))


def routes_by_path(gw) -> dict[str, dict]:  # noqa: ANN001
    boot = yaml.safe_load(gw.bootstrap_path.read_text())
    out: dict[str, dict] = {}
    for listener in boot["static_resources"]["listeners"]:
        for chain in listener.get("filter_chains", []):
            for f in chain.get("filters", []):
                rc = f.get("typed_config", {}).get("route_config") or {}
                for vh in rc.get("virtual_hosts", []):
                    if vh["name"] != f"{H}:80":
                        continue
                    for r in vh.get("routes", []):
                        m = r["match"]
                        out[m.get("prefix") or m.get("path")] = {**r, "_vh_retry": vh.get("retry_policy")}
    return out


def retry_of(route: dict) -> dict | None:
    """The retry policy Envoy applies: the route's own, else its virtual host's."""
    return route["route"].get("retry_policy", route["_vh_retry"])


PREVIOUS_HOSTS = [{"name": "envoy.retry_host_predicates.previous_hosts",
                   "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}]
DEFAULT_RETRY = {
    "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
    "num_retries": 2,
    "retry_host_predicate": PREVIOUS_HOSTS,
    "host_selection_retry_max_attempts": 5,
}


# ----------------------------------------------------------------- timeout
def test_route_timeout(backend_factory, gateway_factory):
    slow = backend_factory("slow")
    http = [
        {"match": [{"uri": {"prefix": "/short"}}], "timeout": "0.5s", "route": to("slow")},
        {"route": to("slow")},
    ]
    gw = gateway_factory(dump(gateway_doc(), vs_doc(http), se_doc("slow", [slow.port])), ports=(80,))
    t0 = time.monotonic()
    status, headers, body = get(gw, "/short", headers={"x-harness-delay": "2"})
    elapsed = time.monotonic() - t0
    assert status == 504, (status, body)
    assert body == b"upstream request timeout"
    assert headers["server"] == "istio-envoy"
    assert 0.45 <= elapsed < 1.5, elapsed
    assert get(gw, "/short", headers={"x-harness-delay": "0.1"})[0] == 200

    # no VS timeout: Istio sets timeout 0s (disabled), so a slow backend still answers
    t0 = time.monotonic()
    status, headers, _ = get(gw, "/slowly", headers={"x-harness-delay": "2"})
    assert status == 200 and headers["x-backend"] == "slow"
    assert time.monotonic() - t0 >= 2.0

    # Istio (route.go setTimeout) mirrors the timeout into the deprecated max_grpc_timeout and never sets
    # max_stream_duration on gateway routes: with max_stream_duration present Envoy ignores route.timeout
    routes = routes_by_path(gw)
    for path, want in (("/", ("0s",)), ("/short", ("0.5s", "0.500s"))):
        action = routes[path]["route"]
        assert action["timeout"] in want, action
        assert action.get("max_grpc_timeout") in want, action
        assert "max_stream_duration" not in action, action


# ----------------------------------------------------------------- default retry policy
def test_default_retry_policy(backend_factory, gateway_factory):
    dropper = backend_factory("dropper", drop_first=1, drop_mode="reset")
    unavailable = backend_factory("unavailable", fail_first=1, fail_status=503)
    dead = free_port()  # nothing listens here: connect-failure
    alive = backend_factory("alive")
    http = [
        {"match": [{"uri": {"prefix": "/drop"}}], "route": to("dropper")},
        {"match": [{"uri": {"prefix": "/503"}}], "route": to("unavailable")},
        {"match": [{"uri": {"prefix": "/half-dead"}}], "route": to("halfdead")},
    ]
    gw = gateway_factory(dump(gateway_doc(), vs_doc(http), se_doc("dropper", [dropper.port]),
                              se_doc("unavailable", [unavailable.port]), se_doc("halfdead", [dead, alive.port])),
                         ports=(80,))

    # an upstream reset after the request was sent is not in the default retry_on list
    # ("reset" is absent): the client sees 503 and the backend saw one attempt
    status, _, body = get(gw, "/drop")
    assert status == 503, body
    assert dropper.count == 1

    # 503 is not retried by default since Istio 1.23
    status, _, _ = get(gw, "/503")
    assert status == 503
    assert unavailable.count == 1

    # connect-failure on one endpoint: retried on the other host (previous_hosts predicate)
    # (a request fails only if the first pick and both retries hit the dead host after 5 host
    # reselections each: ~0.05%; without retries about half would fail)
    results = [get(gw, f"/half-dead/{i}")[0] for i in range(20)]
    assert results.count(200) >= 19, results
    assert alive.count >= 19
    retries = {k: v for k, v in gw.stats("upstream_rq_retry$").items() if "halfdead" in k}
    assert sum(retries.values()) >= 1, retries

    routes = routes_by_path(gw)
    for path in ("/drop", "/503", "/half-dead"):
        assert retry_of(routes[path]) == DEFAULT_RETRY, retry_of(routes[path])
        # the same policy on every route of the virtual host is stated once, on the virtual host
        assert "retry_policy" not in routes[path]["route"], routes[path]["route"]


def test_retries_attempts_zero_disables_retry(backend_factory, gateway_factory):
    dead = free_port()
    alive = backend_factory("alive")
    dropper = backend_factory("dropper", drop_first=1, drop_mode="reset")
    http = [
        {"match": [{"uri": {"prefix": "/drop"}}], "retries": {"attempts": 0}, "route": to("dropper")},
        {"match": [{"uri": {"prefix": "/half-dead"}}], "retries": {"attempts": 0}, "route": to("halfdead")},
    ]
    gw = gateway_factory(dump(gateway_doc(), vs_doc(http), se_doc("dropper", [dropper.port]),
                              se_doc("halfdead", [dead, alive.port])), ports=(80,))
    status, _, _ = get(gw, "/drop")
    assert status == 503
    assert dropper.count == 1
    results = [get(gw, f"/half-dead/{i}")[0] for i in range(20)]
    assert 503 in results and 200 in results, results
    routes = routes_by_path(gw)
    assert retry_of(routes["/drop"]) is None
    assert retry_of(routes["/half-dead"]) is None


def test_retry_on_5xx_status_codes_and_per_try_timeout(backend_factory, gateway_factory):
    b5xx = backend_factory("b5xx", fail_first=2, fail_status=500)
    b503 = backend_factory("b503", fail_first=2, fail_status=503)
    b500 = backend_factory("b500", fail_first=2, fail_status=500)
    exhaust = backend_factory("exhaust", fail_first=10, fail_status=502)
    slowfirst = backend_factory("slowfirst", delay=2.0, delay_first=1)
    dropper = backend_factory("dropper", drop_first=1, drop_mode="reset")
    http = [
        {"match": [{"uri": {"prefix": "/5xx"}}], "retries": {"attempts": 3, "retryOn": "5xx"}, "route": to("b5xx")},
        {"match": [{"uri": {"prefix": "/code503"}}], "retries": {"attempts": 3, "retryOn": "503"}, "route": to("b503")},
        {"match": [{"uri": {"prefix": "/gets500"}}], "retries": {"attempts": 3, "retryOn": "503"},
         "route": to("b500")},
        {"match": [{"uri": {"prefix": "/exhaust"}}], "retries": {"attempts": 2, "retryOn": "5xx"}, "route": to("exhaust")},
        {"match": [{"uri": {"prefix": "/pertry"}}],
         "retries": {"attempts": 2, "perTryTimeout": "0.3s", "retryOn": "5xx"}, "route": to("slowfirst")},
        {"match": [{"uri": {"prefix": "/reset"}}], "retries": {"attempts": 2, "retryOn": "reset"}, "route": to("dropper")},
        {"match": [{"uri": {"prefix": "/mixed"}}],
         "retries": {"attempts": 4, "retryOn": "gateway-error,503, 429,connect-failure", "retryIgnorePreviousHosts": False,
                     "retryRemoteLocalities": True},
         "route": to("b5xx")},
    ]
    docs = [gateway_doc(), vs_doc(http)] + [se_doc(n, [b.port]) for n, b in
                                            (("b5xx", b5xx), ("b503", b503), ("b500", b500), ("exhaust", exhaust),
                                             ("slowfirst", slowfirst), ("dropper", dropper))]
    gw = gateway_factory(dump(*docs), ports=(80,))

    status, _, _ = get(gw, "/5xx")
    assert status == 200
    assert [r["headers"]["x-envoy-attempt-count"] for r in b5xx.requests] == ["1", "2", "3"]

    status, _, _ = get(gw, "/code503")
    assert status == 200
    assert [r["headers"]["x-envoy-attempt-count"] for r in b503.requests] == ["1", "2", "3"]

    status, _, _ = get(gw, "/gets500")
    assert status == 500, "only 503 is retriable"
    assert b500.count == 1

    status, _, _ = get(gw, "/exhaust")
    assert status == 502
    assert exhaust.count == 3, "attempts: 2 → 1 try + 2 retries"

    t0 = time.monotonic()
    status, _, _ = get(gw, "/pertry")
    elapsed = time.monotonic() - t0
    assert status == 200
    assert slowfirst.count == 2
    assert elapsed < 1.5, elapsed

    # retryOn "reset": a backend that drops the first request is retried
    status, _, _ = get(gw, "/reset")
    assert status == 200
    assert [(r["action"], r["headers"]["x-envoy-attempt-count"]) for r in dropper.requests] == [("drop", "1"), ("answer", "2")]

    routes = routes_by_path(gw)
    assert routes["/5xx"]["route"]["retry_policy"] == {
        "retry_on": "5xx", "num_retries": 3, "retry_host_predicate": PREVIOUS_HOSTS,
        "host_selection_retry_max_attempts": 5}
    rp = routes["/code503"]["route"]["retry_policy"]
    assert rp["retry_on"].lstrip(",") == "retriable-status-codes"
    assert rp["retriable_status_codes"] == [503] and rp["num_retries"] == 3
    rp = routes["/pertry"]["route"]["retry_policy"]
    assert rp["per_try_timeout"] in ("0.3s", "0.300s") and rp["num_retries"] == 2
    rp = routes["/mixed"]["route"]["retry_policy"]
    assert rp["retry_on"] == "gateway-error,connect-failure,retriable-status-codes"
    assert rp["retriable_status_codes"] == [503, 429]
    assert "retry_host_predicate" not in rp
    assert rp["retry_priority"]["name"] == "envoy.retry_priorities.previous_priorities"
    assert rp["retry_priority"]["typed_config"]["update_frequency"] == 2


def test_attempt_count_header_reaches_backend(backend_factory, gateway_factory):
    """include_request_attempt_count on every vhost: the first try says 1."""
    be = backend_factory("be")
    gw = gateway_factory(dump(gateway_doc(), vs_doc([{"route": to("be")}]), se_doc("be", [be.port])), ports=(80,))
    for _ in range(3):
        assert get(gw, "/x")[0] == 200
    assert [r["headers"]["x-envoy-attempt-count"] for r in be.requests] == ["1", "1", "1"]
    boot = yaml.safe_load(gw.bootstrap_path.read_text())
    vhosts = [vh for lst in boot["static_resources"]["listeners"] for ch in lst.get("filter_chains", [])
              for f in ch.get("filters", []) for vh in (f.get("typed_config", {}).get("route_config") or {}).get("virtual_hosts", [])
              if vh["name"] == f"{H}:80"]
    assert vhosts and vhosts[0]["include_request_attempt_count"] is True


def test_mesh_default_http_retry_policy(backend_factory, gateway_factory):
    """meshConfig.defaultHttpRetryPolicy replaces Istio's built-in default on routes without ``retries``
    (route.go: policy = mesh.GetDefaultHttpRetryPolicy()); a VS ``retries`` still wins."""
    meshdefault = backend_factory("meshdefault", fail_first=2, fail_status=500)
    vsown = backend_factory("vsown", fail_first=2, fail_status=500)
    operator = {
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "metadata": {"name": "control-plane", "namespace": "istio-system"},
        "spec": {
            "meshConfig": {"defaultHttpRetryPolicy": {"attempts": 3, "retryOn": "5xx"}},
            "components": {"ingressGateways": [{"name": "istio-ingressgateway", "enabled": True,
                                                "label": {"istio": "ingressgateway"}}]},
        },
    }
    http = [
        {"match": [{"uri": {"prefix": "/own"}}], "retries": {"attempts": 1, "retryOn": "5xx"}, "route": to("vsown")},
        {"route": to("meshdefault")},
    ]
    gw = gateway_factory(dump(operator, gateway_doc(), vs_doc(http), se_doc("meshdefault", [meshdefault.port]),
                              se_doc("vsown", [vsown.port])), ports=(80,))
    status, _, _ = get(gw, "/x")
    assert status == 200
    assert [r["headers"]["x-envoy-attempt-count"] for r in meshdefault.requests] == ["1", "2", "3"]
    status, _, _ = get(gw, "/own")
    assert status == 500
    assert vsown.count == 2
    routes = routes_by_path(gw)
    assert routes["/"]["route"]["retry_policy"] == {
        "retry_on": "5xx", "num_retries": 3, "retry_host_predicate": PREVIOUS_HOSTS,
        "host_selection_retry_max_attempts": 5}


def test_consistent_hash_retries_stay_on_the_hashed_host(backend_factory, gateway_factory):
    """retry.ConvertPolicy(in, hashPolicy): with a consistent-hash DestinationRule the policy starts from
    DefaultConsistentHashPolicy (no previous_hosts predicate), also when the VS sets ``retries`` —
    so a retry goes back to the same hashed host."""
    e1 = backend_factory("e1", fail_first=1, fail_status=503)
    e2 = backend_factory("e2", fail_first=1, fail_status=503)
    docs = [
        gateway_doc(),
        se_doc("hashed", [e1.port, e2.port]),
        {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
         "metadata": {"name": "hashed", "namespace": NS},
         "spec": {"host": "hashed", "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}}}},
        vs_doc([
            {"match": [{"uri": {"prefix": "/vsretry"}}], "retries": {"attempts": 1, "retryOn": "5xx"}, "route": to("hashed")},
            {"route": to("hashed")},
        ]),
    ]
    gw = gateway_factory(dump(*docs), ports=(80,))
    routes = routes_by_path(gw)
    status, headers, _ = get(gw, "/vsretry", headers={"x-user": "alice"})
    counts = {"e1": e1.count, "e2": e2.count}
    assert status == 200, (status, counts)
    assert sorted(counts.values()) == [0, 2], counts
    rp = routes["/vsretry"]["route"]["retry_policy"]
    assert "retry_host_predicate" not in rp, rp
    assert "retry_host_predicate" not in routes["/"]["route"]["retry_policy"]
    assert routes["/"]["route"]["hash_policy"] == [{"header": {"header_name": "x-user"}}]


def test_grpc_timeout_header_is_honoured_and_capped(backend_factory, gateway_factory):
    """max_grpc_timeout mirrors the VS timeout (0 = no cap): a gRPC request's ``grpc-timeout`` header
    bounds the upstream wait, capped by the VS timeout when one is set (Envoy router finalTimeout)."""
    slow = backend_factory("slow")
    http = [
        {"match": [{"uri": {"prefix": "/capped"}}], "timeout": "0.5s", "route": to("slow")},
        {"route": to("slow")},
    ]
    gw = gateway_factory(dump(gateway_doc(), vs_doc(http), se_doc("slow", [slow.port])), ports=(80,))
    grpc = {"content-type": "application/grpc", "te": "trailers", "x-harness-delay": "3"}

    def call(path: str, timeout_header: str) -> tuple[float, Any]:
        t0 = time.monotonic()
        status, headers, _ = get(gw, path, method="POST", body=b"", headers={**grpc, "grpc-timeout": timeout_header})
        return time.monotonic() - t0, (status, headers.get("grpc-status"))

    elapsed, result = call("/svc.S/M", "300m")   # no VS timeout: the header's 300 ms applies
    assert 0.25 <= elapsed < 1.5, (elapsed, result)
    assert result[1] not in (None, "0"), result
    elapsed, result = call("/capped/svc.S/M", "10S")  # VS timeout 0.5 s caps the header's 10 s
    assert 0.45 <= elapsed < 1.5, (elapsed, result)
    assert result[1] not in (None, "0"), result
