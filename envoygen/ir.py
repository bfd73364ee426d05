"""The intermediate representation: Envoy-shaped, free of Istio, Jinja and Docker.

The translator builds it; the templates render it.  Everything is a frozen
dataclass of plain values (``@record``: records.py), in the order it is to be emitted, so rendering is a
pure function of the IR and golden files are stable.
"""

from __future__ import annotations

from dataclasses import field
from typing import ClassVar, Literal

from .irpolicy import ConfigPatch, JwtAuthn, JwtProvider, Matcher, Rbac, RbacPolicy, RbacRule  # noqa: F401 - part of the IR
from .records import record

# ------------------------------------------------------------------ HTTP routes


@record
class StringMatcher:
    kind: Literal["exact", "prefix", "safe_regex", "present"]
    value: str = ""


@record
class HeaderMatch:
    name: str
    matcher: StringMatcher
    invert: bool = False
    treat_missing_as_empty: bool = False


@record
class QueryMatch:
    name: str
    matcher: StringMatcher


@record
class RouteMatch:
    path_kind: Literal["prefix", "path", "safe_regex"]
    path: str
    case_sensitive: bool = True
    headers: tuple[HeaderMatch, ...] = ()
    query_parameters: tuple[QueryMatch, ...] = ()


@record
class HeaderValue:
    key: str
    value: str
    append_action: Literal["OVERWRITE_IF_EXISTS_OR_ADD", "APPEND_IF_EXISTS_OR_ADD"]


@record
class HeaderOps:
    request_add: tuple[HeaderValue, ...] = ()
    request_remove: tuple[str, ...] = ()
    response_add: tuple[HeaderValue, ...] = ()
    response_remove: tuple[str, ...] = ()

    def empty(self) -> bool:
        return not (self.request_add or self.request_remove or self.response_add or self.response_remove)


@record
class WeightedCluster:
    name: str
    weight: int
    headers: HeaderOps = field(default_factory=HeaderOps)
    host_rewrite: str | None = None


@record
class RetryPolicy:
    retry_on: str
    num_retries: int
    per_try_timeout: float | None = None
    retriable_status_codes: tuple[int, ...] = ()
    previous_hosts: bool = True
    host_selection_retry_max_attempts: int = 5
    previous_priorities: bool = False


@record
class HashPolicy:
    kind: Literal["header", "cookie", "connection", "query_parameter"]
    name: str = ""
    ttl: float | None = None
    path: str | None = None


@record
class MirrorPolicy:
    cluster: str
    fraction: tuple[int, str] = (100, "HUNDRED")  # (numerator, HUNDRED|MILLION) of requests mirrored


@record
class RouteAction:
    kind: ClassVar[str] = "route"  # which of Envoy's route actions: route, redirect or direct_response

    clusters: tuple[WeightedCluster, ...]
    weighted: bool = False  # the VirtualService had several destinations: weighted_clusters
    timeout: float = 0.0
    retry: RetryPolicy | None = None
    prefix_rewrite: str | None = None
    regex_rewrite: tuple[str, str] | None = None
    host_rewrite: str | None = None
    hash_policies: tuple[HashPolicy, ...] = ()
    mirrors: tuple[MirrorPolicy, ...] = ()


@record
class Redirect:
    kind: ClassVar[str] = "redirect"

    response_code: Literal["MOVED_PERMANENTLY", "FOUND", "SEE_OTHER", "TEMPORARY_REDIRECT", "PERMANENT_REDIRECT"]
    host: str | None = None
    path: str | None = None
    prefix_rewrite: str | None = None
    scheme: str | None = None
    port: int | None = None
    strip_query: bool = False


@record
class DirectResponse:
    kind: ClassVar[str] = "direct_response"

    status: int
    body: str | None = None
    body_base64: str | None = None  # body.bytes, kept as bytes (inline_bytes)


@record
class Fault:
    delay: float | None = None
    delay_fraction: tuple[int, str] = (0, "HUNDRED")  # (numerator, HUNDRED|MILLION)
    abort_status: int | None = None
    abort_grpc_status: int | None = None
    abort_fraction: tuple[int, str] | None = None  # None: Envoy's default (0%), as Istio leaves it unset


@record
class Cors:
    origins: tuple[StringMatcher, ...] = ()
    allow_methods: str | None = None
    allow_headers: str | None = None
    expose_headers: str | None = None
    max_age: int | None = None
    allow_credentials: bool | None = None
    forward_not_matching_preflights: bool = True


@record
class Route:
    name: str
    match: RouteMatch
    action: RouteAction | Redirect | DirectResponse
    headers: HeaderOps = field(default_factory=HeaderOps)
    fault: Fault | None = None
    cors: Cors | None = None
    operation: str = ""
    metadata_vs: str = ""  # namespace/name of the VirtualService, for proxy-config and config_dump


@record
class VirtualHost:
    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]
    require_tls: bool = False
    include_request_attempt_count: bool = True
    request_body_buffer_limit: int | None = None  # bytes of request body buffered (for retries); None: the connection's


@record
class RouteConfig:
    name: str
    virtual_hosts: tuple[VirtualHost, ...]


# ------------------------------------------------------------------ listeners


@record
class AccessLog:
    path: str
    encoding: Literal["TEXT", "JSON"]
    text_format: str = ""
    json_format: tuple[tuple[str, str], ...] = ()
    filter_expression: str = ""  # Telemetry accessLogging filter: Envoy's CEL access-log filter


@record
class HttpHardening:
    """What an edge proxy sets on a connection manager (translate/hardening.py); defaults: Istio's gateway."""
    request_headers_timeout: float | None = None  # None: Envoy's default (disabled)
    stream_idle_timeout: float = 0.0  # 0: disabled, as Istio's gateways
    request_timeout: float | None = None  # None: Envoy's default (disabled)
    idle_timeout: float | None = None  # common_http_protocol_options.idle_timeout; None: Envoy's default (1 h)
    headers_with_underscores_action: Literal["ALLOW", "REJECT_REQUEST"] = "ALLOW"
    merge_slashes: bool = False
    path_with_escaped_slashes_action: Literal["KEEP_UNCHANGED", "UNESCAPE_AND_REDIRECT"] = "KEEP_UNCHANGED"
    http2_max_concurrent_streams: int | None = None  # None: Envoy 1.40 defaults: 1024 streams, 16 MiB, 24 MiB
    http2_initial_stream_window_size: int | None = None
    http2_initial_connection_window_size: int | None = None


@record
class HttpConnectionManager:
    stat_prefix: str
    route_config: RouteConfig
    xff_num_trusted_hops: int = 0
    access_log: AccessLog | None = None
    uses_fault: bool = False
    uses_cors: bool = False
    hardening: HttpHardening = field(default_factory=HttpHardening)
    rbac: tuple[Rbac, ...] = ()  # envoy.filters.http.rbac filters, in Istio's order (AUDIT, DENY, ALLOW)
    jwt: JwtAuthn | None = None  # envoy.filters.http.jwt_authn, before RBAC


@record
class TcpProxy:
    stat_prefix: str
    clusters: tuple[WeightedCluster, ...]
    idle_timeout: float | None = None
    access_log: AccessLog | None = None
    max_connection_duration: float | None = None
    hash_source_ip: bool = False
    weighted: bool = False  # the route listed several destinations: weighted_clusters
    mongo: bool = False  # a MONGO server: envoy.filters.network.mongo_proxy first (Istio's EnableMongoFilter)


@record
class SdsRef:
    """A secret Envoy loads from an SDS file (path relative to the install dir)."""

    name: str
    sds_file: str


@record
class SanMatcher:
    """One entry of match_typed_subject_alt_names: an exact value of one SAN type."""

    san_type: Literal["DNS", "URI", "IP_ADDRESS", "EMAIL"]
    value: str


@record
class DownstreamTls:
    certificates: tuple[SdsRef, ...]
    validation: SdsRef | None = None
    require_client_certificate: bool = False
    subject_alt_names: tuple[str, ...] = ()
    san_matchers: tuple[SanMatcher, ...] = ()  # what subject_alt_names becomes in Envoy
    spki: tuple[str, ...] = ()
    hashes: tuple[str, ...] = ()
    min_version: str | None = None
    max_version: str | None = None
    cipher_suites: tuple[str, ...] = ()
    ecdh_curves: tuple[str, ...] = ()
    alpn: tuple[str, ...] = ()
    trust_chain_verification: str | None = None


@record
class FilterChain:
    name: str
    server_names: tuple[str, ...] = ()
    tls: DownstreamTls | None = None
    http: HttpConnectionManager | None = None
    tcp: TcpProxy | None = None
    network_rbac: tuple[Rbac, ...] = ()  # envoy.filters.network.rbac before the TCP proxy


@record
class Listener:
    name: str
    address: str
    port: int
    filter_chains: tuple[FilterChain, ...]
    tls_inspector: bool = False
    access_log: AccessLog | None = None
    buffer_limit: int | None = None  # per_connection_buffer_limit_bytes; None: Envoy's default (1 MiB)


# ------------------------------------------------------------------ clusters


@record
class Endpoint:
    address: str
    port: int
    weight: int | None = None
    locality: str = ""  # Istio's region/zone/subzone (empty: none)


@record
class OutlierDetection:
    consecutive_5xx: int | None = None
    consecutive_gateway_failure: int | None = None
    enforcing_consecutive_5xx: int = 0  # percent of ejections enforced (Istio: 100 when the count is set and > 0)
    enforcing_consecutive_gateway_failure: int = 0
    interval: float | None = None
    base_ejection_time: float | None = None
    max_ejection_percent: int | None = None
    split_external_local_origin_errors: bool | None = None
    consecutive_local_origin_failure: int | None = None


@record
class UpstreamTls:
    """DestinationRule ``tls`` SIMPLE/MUTUAL: TLS origination to the upstream."""

    sni: str | None
    auto_sni: bool
    auto_san_validation: bool
    certificate: SdsRef | None = None  # client certificate (MUTUAL)
    validation: SdsRef | None = None  # CA from a credential or caCertificates
    system_ca: bool = False  # no CA given: the OS trust bundle
    subject_alt_names: tuple[str, ...] = ()
    san_matchers: tuple[SanMatcher, ...] = ()
    alpn: tuple[str, ...] = ()


@record
class Cluster:
    name: str
    discovery: Literal["STATIC", "STRICT_DNS", "LOGICAL_DNS"]
    endpoints: tuple[Endpoint, ...]
    connect_timeout: float = 10.0
    lb_policy: Literal["LEAST_REQUEST", "ROUND_ROBIN", "RANDOM", "RING_HASH", "MAGLEV"] = "LEAST_REQUEST"
    ring_size: int | None = None
    maglev_table_size: int | None = None
    max_connections: int = 4294967295
    max_pending_requests: int = 4294967295
    max_requests: int = 4294967295
    max_retries: int = 4294967295
    outlier: OutlierDetection | None = None
    healthy_panic_threshold: int | None = None
    http2: bool = False
    use_downstream_protocol: bool = False
    idle_timeout: float | None = None
    max_requests_per_connection: int | None = None
    max_connection_duration: float | None = None
    max_concurrent_streams: int | None = None
    tcp_keepalive: tuple[int | None, int | None, int | None] | None = None
    dns_refresh_rate: float = 60.0
    tls: UpstreamTls | None = None
    service: str = ""  # fqdn, for proxy-config
    port: int = 0
    subset: str = ""
    direction: str = "outbound"
    buffer_limit: int | None = None  # per_connection_buffer_limit_bytes; None: Envoy's default (1 MiB)
    metadata_dr: str = ""  # the DestinationRule behind the cluster, as Istio's cluster metadata names it


# ------------------------------------------------------------------ secrets and bootstrap


def is_private_key_file(name: str) -> bool:
    """A credential file holding a private key (written 0600, never printed)."""
    return name.endswith(".key")


@record
class Secret:
    """One SDS file: a certificate+key, or a validation context (CA, CRL)."""

    name: str  # kubernetes://<credential>[-cacert]
    sds_file: str  # relative to the bundle: sds/<credential>.yaml
    directory: str  # relative: certs/<credential>
    kind: Literal["tls_certificate", "validation_context"]
    files: tuple[tuple[str, bytes], ...] = field(repr=False)  # (file name in directory, content)
    credential: str = ""

    def __repr__(self) -> str:
        # never the bytes: a private key must not reach a log, a traceback or an IR dump
        shown = ", ".join(f"{n}: {len(c)} bytes" + (" (private key, redacted)" if is_private_key_file(n) else "")
                          for n, c in self.files)
        return (f"Secret(name={self.name!r}, sds_file={self.sds_file!r}, directory={self.directory!r}, "
                f"kind={self.kind!r}, files=[{shown}], credential={self.credential!r})")

    @property
    def has_ocsp_staple(self) -> bool:
        return any(n == "tls.ocsp-staple" for n, _ in self.files)

    @property
    def has_crl(self) -> bool:
        return any(n == "ca.crl" for n, _ in self.files)


@record
class Overload:
    max_heap_bytes: int  # the overload manager's fixed_heap monitor; its actions trigger at these fractions
    shrink_heap_at: float  # fraction of max_heap_bytes
    stop_accepting_requests_at: float


@record
class Bootstrap:
    node_id: str
    node_cluster: str
    admin_port: int
    readiness_port: int
    stats_port: int
    listeners: tuple[Listener, ...]
    clusters: tuple[Cluster, ...]
    secrets: tuple[Secret, ...]
    workload: str
    namespace: str
    stats_listener: str
    readiness_listener: str
    bound_ports: tuple[int, ...] = ()
    patches: tuple[ConfigPatch, ...] = ()  # EnvoyFilter patches, applied to the rendered bootstrap
    overload: Overload | None = None  # None: only the global connection limit, as Istio
