"""The configs bench/dataplane.py compares: hand-written Envoy bootstraps (minimal, Istio-shaped, the
backend), the Istio input rendered by ``envoygen render``, and the settings ``--ablate`` takes out of it.

What the Istio-shaped bootstrap holds, and why, is in docs/benchmarks.md ("Data plane").
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import yaml

HOST = "webapp.istioinaction.io"
T = "type.googleapis.com/envoy.extensions."
HCM = T + "filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {"@type": T + "filters.http.router.v3.Router"}}
# Istio's text access log format (pilot/pkg/model/telemetry_logging.go, EnvoyTextLogFormat).
ISTIO_LOG = ("[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% "
             "%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
             "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
             "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "
             "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% "
             "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
             "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n")
ISTIO_RETRY = {"retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
               "num_retries": 2, "host_selection_retry_max_attempts": "5",
               "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {
                   "@type": T + "retry.host.previous_hosts.v3.PreviousHostsPredicate"}}]}

# --------------------------------------------------------------------------
# hand-written bootstraps (JSON)


def _sock(port: int, address: str = "127.0.0.1") -> dict:
    return {"socket_address": {"address": address, "port_value": port}}


def _static_cluster(name: str, port: int, **extra: object) -> dict:
    return {"name": name, "type": "STATIC", "connect_timeout": "10s", **extra, "load_assignment": {
        "cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _sock(port)}}]}]}}


def _downstream_tls(cert: Path, key: Path, **common: object) -> dict:
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": T + "transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": {"tls_certificates": [{"certificate_chain": {"filename": str(cert)},
                                                     "private_key": {"filename": str(key)}}], **common}}}


def _hcm(prefix: str, routes: dict, filters: list | None = None, **extra: object) -> dict:
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": HCM, "stat_prefix": prefix, **extra, "http_filters": [*(filters or []), ROUTER],
        "route_config": routes}}


def _bootstrap(admin: int, listeners: list, clusters: list, **extra: object) -> dict:
    return {"admin": {"address": _sock(admin)}, **extra,
            "static_resources": {"listeners": listeners, "clusters": clusters}}


def backend_bootstrap(port: int, admin: int) -> dict:
    """A fast upstream: 200 ``ok``; ``/__check`` echoes what the proxy sent as response headers."""
    echo = [{"header": {"key": f"x-seen-{h}", "value": f"%REQ({h})%"}}
            for h in ("x-envoy-attempt-count", "x-request-id", "x-forwarded-proto")]
    routes = {"virtual_hosts": [{"name": "backend", "domains": ["*"], "routes": [
        {"match": {"path": "/__check"}, "direct_response": {"status": 200}, "response_headers_to_add": echo},
        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}]}]}
    return _bootstrap(admin, [{"name": "backend", "address": _sock(port),
                               "filter_chains": [{"filters": [_hcm("backend", routes)]}]}], [])


def minimal_bootstrap(ports: dict, backend: int, cert: Path, key: Path) -> dict:
    """One listener (plus its TLS twin), the router only, one route, one STATIC cluster."""
    routes = {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]}
    listeners = [{"name": "http", "address": _sock(ports["http"]), "filter_chains": [{"filters": [_hcm("http", routes)]}]},
                 {"name": "https", "address": _sock(ports["https"]), "filter_chains": [
                     {"transport_socket": _downstream_tls(cert, key), "filters": [_hcm("https", routes)]}]}]
    return _bootstrap(ports["admin"], listeners, [_static_cluster("backend", backend)])


def _istio_routes(name: str, port: int) -> dict:
    svc = "webapp.istioinaction.svc.cluster.local"
    route = {"name": "webapp-vs-from-gw.istioinaction.0", "match": {"prefix": "/", "case_sensitive": True},
             "route": {"cluster": f"outbound|80||{svc}", "timeout": "0s", "retry_policy": ISTIO_RETRY,
                       "max_grpc_timeout": "0s"},
             "metadata": {"filter_metadata": {"istio": {
                 "config": "/apis/networking.istio.io/v1/namespaces/istioinaction/virtual-service/webapp-vs-from-gw"}}},
             "decorator": {"operation": f"{svc}:80/*"}}
    return {"name": name, "validate_clusters": False, "max_direct_response_body_size_bytes": 1048576,
            "ignore_port_in_host_matching": True, "virtual_hosts": [
                {"name": f"{HOST}:{port}", "domains": [HOST], "routes": [route], "include_request_attempt_count": True}]}


def _istio_hcm(prefix: str, routes: dict, access_log: bool) -> dict:
    """What istiod's buildHTTPConnectionManager writes for a gateway (pilot/pkg/networking/core/listener_builder.go)."""
    grpc_stats = {"name": "envoy.filters.http.grpc_stats", "typed_config": {
        "@type": T + "filters.http.grpc_stats.v3.FilterConfig", "emit_filter_state": True,
        "stats_for_all_methods": False}}
    fault = {"name": "envoy.filters.http.fault", "typed_config": {"@type": T + "filters.http.fault.v3.HTTPFault"}}
    cors = {"name": "envoy.filters.http.cors", "typed_config": {"@type": T + "filters.http.cors.v3.Cors"}}
    log = [{"name": "envoy.access_loggers.file", "typed_config": {
        "@type": T + "access_loggers.file.v3.FileAccessLog", "path": "/dev/null",
        "log_format": {"text_format_source": {"inline_string": ISTIO_LOG}}}}] if access_log else []
    return _hcm(prefix, routes, [grpc_stats, fault, cors], codec_type="AUTO", use_remote_address=True,
                access_log=log, normalize_path=True, path_with_escaped_slashes_action="KEEP_UNCHANGED",
                upgrade_configs=[{"upgrade_type": "websocket"}], stream_idle_timeout="0s",
                forward_client_cert_details="SANITIZE_SET", server_name="istio-envoy",
                set_current_client_cert_details={"subject": True, "dns": True, "uri": True},
                http_protocol_options={}, proxy_100_continue=True, request_headers_timeout="10s",
                tracing={"client_sampling": {"value": 100}, "random_sampling": {"value": 1},
                         "overall_sampling": {"value": 100}},
                request_id_extension={"typed_config": {
                    "@type": T + "request_id.uuid.v3.UuidRequestIdConfig", "use_request_id_for_trace_sampling": True}})


def _istio_stats_config() -> dict:
    """Istio's bootstrap stats_config (tools/packaging/common/envoy_bootstrap.json, pkg/bootstrap/config.go): its
    tag extractors and the default inclusion list (most per-listener/cluster stats are not created)."""
    tags = [("cluster_name", r"^cluster(\.(.+);)"), ("tcp_prefix", r"^tcp\.((.*?)\.)\w+?$"),
            ("response_code", r"_rq(_(\d{3}))$"), ("response_code_class", r"_rq(_(\dxx))$"),
            ("listener_address", r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)"),
            ("http_conn_manager_prefix", r"^http\.(((?:[_.[:digit:]\w]*|[_\[\]aAbBcCdDeEfF[:digit:]\w\:]*));\.)")]
    prefixes = ["reporter=", "cluster_manager", "listener_manager", "server", "cluster.xds-grpc", "wasm"]
    suffixes = ["rbac.allowed", "rbac.denied", "shadow_allowed", "shadow_denied", "downstream_cx_active"]
    return {"use_all_default_tags": False, "stats_tags": [{"tag_name": n, "regex": r} for n, r in tags],
            "stats_matcher": {"inclusion_list": {"patterns": [{"prefix": p} for p in prefixes]
                                                 + [{"suffix": s} for s in suffixes]
                                                 + [{"safe_regex": {"regex": r"vhost\..*\.route\..*"}}]}}}


def istio_bootstrap(ports: dict, backend: int, cert: Path, key: Path, access_log: bool = False) -> dict:
    """Istio-shaped: the listener, HCM, route and cluster fields istiod writes for this Gateway + VirtualService."""
    listeners = []
    for proto, server_port in (("http", 80), ("https", 443)):
        lst = {"name": f"0.0.0.0_{ports[proto]}", "address": _sock(ports[proto], "0.0.0.0"),
               "traffic_direction": "OUTBOUND", "per_connection_buffer_limit_bytes": 32768,
               "max_connections_to_accept_per_socket_event": 1}
        name = f"http.{server_port}" if proto == "http" else "https.443.https.coolstore-gateway.istioinaction"
        hcm = _istio_hcm(f"outbound_0.0.0.0_{ports[proto]}", _istio_routes(name, server_port), access_log)
        chain: dict = {"name": name, "filters": [hcm]}
        if proto == "https":
            lst["listener_filters"] = [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
                "@type": T + "filters.listener.tls_inspector.v3.TlsInspector", "initial_read_buffer_size": 512}}]
            chain["filter_chain_match"] = {"server_names": [HOST]}
            chain["transport_socket"] = _downstream_tls(cert, key, alpn_protocols=["h2", "http/1.1"],
                                                        tls_params={"tls_minimum_protocol_version": "TLSv1_2"})
        lst["filter_chains"] = [chain]
        listeners.append(lst)
    svc = "webapp.istioinaction.svc.cluster.local"
    cluster = _static_cluster(
        f"outbound|80||{svc}", backend, per_connection_buffer_limit_bytes=32768, lb_policy="LEAST_REQUEST",
        common_lb_config={}, circuit_breakers={"thresholds": [{
            "max_connections": 4294967295, "max_pending_requests": 4294967295, "max_requests": 4294967295,
            "max_retries": 4294967295, "track_remaining": False}]},
        metadata={"filter_metadata": {"istio": {"services": [{"host": svc, "name": "webapp",
                                                               "namespace": "istioinaction"}]}}})
    overload = {"resource_monitors": [{"name": "envoy.resource_monitors.global_downstream_max_connections",
                                       "typed_config": {"@type": T + "resource_monitors.downstream_connections.v3."
                                                        "DownstreamConnectionsConfig",
                                                        "max_active_downstream_connections": 2147483647}}]}
    return _bootstrap(ports["admin"], listeners, [cluster], stats_config=_istio_stats_config(),
                      overload_manager=overload, node={"id": "router~127.0.0.1~istio-ingressgateway.istio-system"
                                                       "~istio-system.svc.cluster.local",
                                                       "cluster": "istio-ingressgateway.istio-system"})


# --------------------------------------------------------------------------
# the rendered gateway, and what --ablate takes out of it

GATEWAY = """\
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: coolstore-gateway, namespace: istioinaction}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["webapp.istioinaction.io"]
  - port: {number: 443, name: https, protocol: HTTPS}
    tls: {mode: SIMPLE, credentialName: webapp-credential}
    hosts: ["webapp.istioinaction.io"]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: webapp-vs-from-gw, namespace: istioinaction}
spec:
  hosts: ["webapp.istioinaction.io"]
  gateways: [coolstore-gateway]
  http:
  - route:
    - destination: {host: webapp, port: {number: 80}}
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: webapp, namespace: istioinaction}
spec:
  hosts: [webapp.istioinaction.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: BACKEND_PORT}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
"""


def render_gateway(work: Path, ports: dict, backend: int, creds: Path) -> Path:
    (work / "in").mkdir(parents=True, exist_ok=True)
    (work / "in" / "gateway.yaml").write_text(GATEWAY.replace("BACKEND_PORT", str(backend)))
    out = work / "out"
    cmd = [sys.executable, "-m", "envoygen", "render", "-q", "-f", str(work / "in"), "-o", str(out),
           "--install-dir", str(out), "--credentials-dir", str(creds),
           "--port-map", f"80={ports['http']}", "--port-map", f"443={ports['https']}",
           "--admin-port", str(ports["admin"]), "--readiness-port", str(ports["ready"]),
           "--stats-port", str(ports["stats"])]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise SystemExit(f"envoygen render failed ({p.returncode}):\n{p.stderr[-3000:]}")
    name = json.loads((out / "manifest.json").read_text()).get("bootstrap") or "envoy.yaml"
    return out / name


def _walk(node: object, fn) -> None:  # noqa: ANN001 - fn(dict) on every mapping
    if isinstance(node, dict):
        fn(node)
        for v in node.values():
            _walk(v, fn)
    elif isinstance(node, list):
        for v in node:
            _walk(v, fn)


def _drop(*keys: str):  # noqa: ANN202
    return lambda boot: _walk(boot, lambda d: [d.pop(k, None) for k in keys])


def _drop_filters(*names: str):  # noqa: ANN202
    def fn(d: dict) -> None:
        if "http_filters" in d:
            d["http_filters"] = [f for f in d["http_filters"] if f["name"] not in names]
    return lambda boot: _walk(boot, fn)


def _round_robin(boot: dict) -> None:
    _walk(boot, lambda d: d.update(lb_policy="ROUND_ROBIN") if d.get("lb_policy") == "LEAST_REQUEST" else None)


ABLATIONS = {
    "no-overload-manager": _drop("overload_manager"),
    "no-buffer-limits": _drop("per_connection_buffer_limit_bytes"),
    "no-accept-per-event": _drop("max_connections_to_accept_per_socket_event"),
    "no-fault-cors": _drop_filters("envoy.filters.http.fault", "envoy.filters.http.cors"),
    "no-attempt-count": _drop("include_request_attempt_count"),
    "no-body-buffer-limit": _drop("request_body_buffer_limit"),
    "no-retry-policy": _drop("retry_policy"),
    "no-least-request": _round_robin,
    "no-circuit-breakers": _drop("circuit_breakers"),
    "no-hcm-extras": _drop("use_remote_address", "xff_num_trusted_hops", "forward_client_cert_details",
                           "set_current_client_cert_details", "server_name", "server_header_transformation",
                           "normalize_path", "merge_slashes", "path_with_escaped_slashes_action",
                           "request_headers_timeout", "proxy_100_continue", "upgrade_configs"),
    "no-route-extras": _drop("metadata", "max_grpc_timeout", "case_sensitive"),
    # the TLS side (measured with --protocols https): SNI selection and ALPN, client-certificate headers
    "no-tls-inspector": _drop("listener_filters", "filter_chain_match", "alpn_protocols"),
    "no-xfcc": _drop("forward_client_cert_details", "set_current_client_cert_details"),
    # the other way round: what Istio's bootstrap stats_config (tag extractors, inclusion list) saves
    "plus-istio-stats-matcher": lambda boot: boot.update(stats_config=_istio_stats_config()),
}


def ablated(rendered: Path, variant: str, dest: Path) -> Path:
    """The rendered bootstrap changed by ABLATIONS[variant], written as JSON to ``dest``."""
    boot = copy.deepcopy(yaml.safe_load(rendered.read_text()))
    ABLATIONS[variant](boot)
    dest.write_text(json.dumps(boot))
    return dest
