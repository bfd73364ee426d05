"""Istio semantics: typed resources → IR for one gateway workload."""

from __future__ import annotations

from dataclasses import replace

from .. import ir, names
from ..diagnostics import Findings
from ..resolve import View
from .clusters import build_cluster
from .telemetry import telemetry_access_log
from .context import Context, Options
from .gateway import build_listeners

# pilot/pkg/model/telemetry_logging.go EnvoyTextLogFormat (since istio#52384)
ISTIO_TEXT_LOG_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% '
    '%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% '
    '%BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% '
    "%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)
# EnvoyJSONLogFormatIstio keys
ISTIO_JSON_LOG_FORMAT = (
    ("authority", "%REQ(:AUTHORITY)%"), ("bytes_received", "%BYTES_RECEIVED%"), ("bytes_sent", "%BYTES_SENT%"),
    ("connection_termination_details", "%CONNECTION_TERMINATION_DETAILS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"), ("duration", "%DURATION%"),
    ("method", "%REQ(:METHOD)%"), ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"), ("protocol", "%PROTOCOL%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"), ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    ("response_code", "%RESPONSE_CODE%"), ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    ("response_flags", "%RESPONSE_FLAGS%"), ("route_name", "%ROUTE_NAME%"), ("start_time", "%START_TIME%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"), ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("upstream_service_time", "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%"),
    ("upstream_transport_failure_reason", "%UPSTREAM_TRANSPORT_FAILURE_REASON%"),
    ("user_agent", "%REQ(USER-AGENT)%"), ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
)


def access_log(ctx: Context) -> ir.AccessLog | None:
    decided, log = telemetry_access_log(ctx, ISTIO_TEXT_LOG_FORMAT)
    if decided:
        if log is not None and ctx.options.access_log is not None:  # --access-log moves (or drops) it
            return replace(log, path=ctx.options.access_log) if ctx.options.access_log else None
        return log
    mesh = ctx.workload.mesh
    path = ctx.options.access_log if ctx.options.access_log is not None else mesh.access_log_file
    if not path:
        return None
    if mesh.access_log_encoding == "JSON":
        return ir.AccessLog(path, "JSON", json_format=ISTIO_JSON_LOG_FORMAT)
    fmt = mesh.access_log_format or ISTIO_TEXT_LOG_FORMAT
    if not fmt.endswith("\n"):
        fmt += "\n"
    return ir.AccessLog(path, "TEXT", text_format=fmt)


def translate(view: View, options: Options, findings: Findings) -> ir.Bootstrap:
    """One workload's resolved view → its IR.  Reads no file and renders nothing."""
    workload = view.workload
    ctx = Context(view, options, findings)
    registry, rules = view.registry, view.rules
    log = access_log(ctx)
    listeners = build_listeners(ctx, registry, rules, log)
    # the policy translators are imported only for inputs that have such policies (without, they change nothing)
    if view.authorization_policies:
        from .authz import attach_rbac

        listeners = attach_rbac(listeners, view.authorization_policies, findings)
    if view.request_authentications:
        from .authn import attach_jwt, build_jwt

        listeners = attach_jwt(listeners, build_jwt(view.request_authentications, view.jwks))
    patches: tuple[ir.ConfigPatch, ...] = ()
    if view.envoy_filters:
        from .envoyfilter import build_patches

        patches = build_patches(view.envoy_filters)
    clusters: list[ir.Cluster] = []
    for host in sorted(registry):
        svc = registry[host]
        rule = view.rule_for(host)
        for port in sorted(svc.ports, key=lambda p: p.number):
            clusters.append(build_cluster(ctx, svc, port, "", rule))
            for subset in (rule.subsets if rule else []):
                clusters.append(build_cluster(ctx, svc, port, subset.name, rule))
    clusters.sort(key=lambda c: c.name)
    bound = sorted({l.port for l in listeners} | {options.readiness_port, options.stats_port})
    return ir.Bootstrap(
        node_id=names.node_id(workload.name, workload.namespace),
        node_cluster=names.node_cluster(workload.name, workload.namespace),
        stats_listener=names.listener(names.ANY_ADDRESS, options.stats_port),
        readiness_listener=names.listener(names.ANY_ADDRESS, options.readiness_port),
        admin_port=options.admin_port,
        readiness_port=options.readiness_port,
        stats_port=options.stats_port,
        listeners=tuple(listeners),
        clusters=tuple(clusters),
        secrets=tuple(ctx.secrets[k] for k in sorted(ctx.secrets)),
        workload=workload.name,
        namespace=workload.namespace,
        bound_ports=tuple(bound),
        patches=patches,
        overload=ctx.hardening.overload,
    )


__all__ = ["Options", "translate"]
