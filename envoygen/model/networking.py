"""networking.istio.io Gateway, VirtualService, DestinationRule, ServiceEntry.

v1alpha3, v1beta1 and v1 share one schema.  Every field of the Istio API is
declared: supported ones with their types, the rest with :func:`unsupported`
and the reason, so a typo is "unknown field" (EG0101) and a real Istio field
envoygen does not implement is "not supported" (EG0104).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from .base import Duration, Int32, PositiveDuration, Metadata, NonEmptyStr, Port, Strict, UInt32, no_effect, unsupported
from .traffic import (  # DestinationRule's types, re-exported: import them from here or there
    ClientTLS,
    ConnectionPool,
    ConsistentHash,
    DestinationRuleSpec,
    HTTPCookie,
    HTTPSettings,
    LoadBalancer,
    Maglev,
    OutlierDetection,
    PortSelector,
    PortTrafficPolicy,
    RingHash,
    Subset,
    TCPSettings,
    TcpKeepalive,
    TrafficPolicy,
)

API_GROUP = "networking.istio.io"
API_VERSIONS = ("v1alpha3", "v1beta1", "v1")


# ---------------------------------------------------------------- Gateway
class GatewayPort(Strict):
    number: Port
    protocol: NonEmptyStr
    name: NonEmptyStr
    target_port: unsupported("Istio rejects targetPort on a Gateway port: it has no impact") = None


class ServerTLS(Strict):
    https_redirect: bool = False
    mode: Literal["PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"] = "PASSTHROUGH"
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    ca_crl: str | None = None
    credential_name: str | None = None
    credential_names: list[str] | None = Field(default=None, max_length=2)
    ca_cert_credential_name: str | None = None
    tls_certificates: unsupported("use credentialName/credentialNames") = None
    subject_alt_names: list[str] = Field(default_factory=list)
    verify_certificate_spki: list[str] = Field(default_factory=list)
    verify_certificate_hash: list[str] = Field(default_factory=list)
    min_protocol_version: Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"] = "TLS_AUTO"
    max_protocol_version: Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"] = "TLS_AUTO"
    cipher_suites: list[str] = Field(default_factory=list)
    ecdh_curves: list[str] = Field(default_factory=list)
    insecure_skip_verify: unsupported("insecureSkipVerify (Gateway API AllowInsecureFallback) is not implemented") = None


class Server(Strict):
    port: GatewayPort
    bind: str | None = None
    hosts: list[NonEmptyStr] = Field(min_length=1)
    tls: ServerTLS | None = None
    name: str | None = None
    default_endpoint: unsupported("defaultEndpoint applies to sidecars only") = None


class GatewaySpec(Strict):
    servers: list[Server] = Field(min_length=1)
    selector: dict[str, str] = Field(default_factory=dict)


# ---------------------------------------------------------------- VirtualService
class StringMatch(Strict):
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one(self) -> "StringMatch":
        if sum(v is not None for v in (self.exact, self.prefix, self.regex)) > 1:
            raise ValueError("set only one of exact, prefix, regex")
        return self


class Destination(Strict):
    host: NonEmptyStr
    subset: str | None = None
    port: PortSelector | None = None


class HeaderOperations(Strict):
    set: dict[str, str] = Field(default_factory=dict)
    add: dict[str, str] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)


class Headers(Strict):
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


class HTTPRouteDestination(Strict):
    destination: Destination
    weight: Int32 = 0
    headers: Headers | None = None


class RouteDestination(Strict):
    destination: Destination
    weight: Int32 = 0


class HTTPMatchRequest(Strict):
    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] = Field(default_factory=dict)
    port: Port | None = None
    source_labels: dict[str, str] = Field(default_factory=dict)  # compared with the gateway workload's labels
    gateways: list[str] = Field(default_factory=list)
    query_params: dict[str, StringMatch] = Field(default_factory=dict)
    ignore_uri_case: bool = False
    without_headers: dict[str, StringMatch] = Field(default_factory=dict)
    source_namespace: str | None = None  # compared with the gateway workload's namespace
    stat_prefix: unsupported("statPrefix is not implemented") = None


class HTTPRedirect(Strict):
    uri: str | None = None
    authority: str | None = None
    port: Port | None = None
    derive_port: Literal["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"] | None = None
    scheme: str | None = None
    redirect_code: int = 0
    prefix_rewrite: str | None = None

    @model_validator(mode="after")
    def _code(self) -> "HTTPRedirect":
        if self.uri is not None and self.prefix_rewrite is not None:
            raise ValueError("set only one of uri and prefixRewrite")
        if self.redirect_code not in (0, 301, 302, 303, 307, 308):
            raise ValueError("redirectCode must be one of 301, 302, 303, 307, 308")
        if self.port is not None and self.derive_port is not None:
            raise ValueError("set only one of port and derivePort")
        return self


class HTTPBody(Strict):
    string: str | None = None
    bytes: str | None = None

    @model_validator(mode="after")
    def _one(self) -> "HTTPBody":
        if (self.string is None) == (self.bytes is None):
            raise ValueError("set exactly one of string and bytes")
        if self.bytes is not None:
            import base64
            import binascii

            try:
                base64.b64decode(self.bytes.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                raise ValueError("bytes must be base64") from None
        return self


class HTTPDirectResponse(Strict):
    status: int = Field(ge=200, le=599)
    body: HTTPBody | None = None


class RegexRewrite(Strict):
    match: NonEmptyStr
    rewrite: str


class HTTPRewrite(Strict):
    uri: str | None = None
    authority: str | None = None
    uri_regex_rewrite: RegexRewrite | None = None

    @model_validator(mode="after")
    def _one(self) -> "HTTPRewrite":
        if self.uri is not None and self.uri_regex_rewrite is not None:
            raise ValueError("set only one of uri and uriRegexRewrite")
        return self


class HTTPRetry(Strict):
    attempts: Int32
    per_try_timeout: PositiveDuration | None = None
    retry_on: str | None = None
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff: unsupported("retry backoff is not implemented") = None


class Percent(Strict):
    value: float = Field(ge=0, le=100)


class FaultDelay(Strict):
    fixed_delay: PositiveDuration | None = None
    exponential_delay: unsupported("Istio ignores exponentialDelay") = None
    percentage: Percent | None = None
    percent: int | None = Field(default=None, ge=0, le=100)


class FaultAbort(Strict):
    http_status: int | None = Field(default=None, ge=200, le=599)
    grpc_status: str | None = None
    http2_error: unsupported("http2Error aborts are not implemented") = None
    percentage: Percent | None = None

    @model_validator(mode="after")
    def _one(self) -> "FaultAbort":
        if (self.http_status is None) == (self.grpc_status is None):
            raise ValueError("set exactly one of httpStatus and grpcStatus")
        return self


class HTTPFaultInjection(Strict):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


class CorsPolicy(Strict):
    allow_origin: list[str] | None = None  # deprecated exact origins
    allow_origins: list[StringMatch] = Field(default_factory=list)
    allow_methods: list[str] = Field(default_factory=list)
    allow_headers: list[str] = Field(default_factory=list)
    expose_headers: list[str] = Field(default_factory=list)
    max_age: Duration | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: Literal["UNSPECIFIED", "FORWARD", "IGNORE"] = "UNSPECIFIED"


class HTTPMirrorPolicy(Strict):
    destination: Destination
    percentage: Percent | None = None


class HTTPRoute(Strict):
    name: str | None = None
    match: list[HTTPMatchRequest] = Field(default_factory=list)
    route: list[HTTPRouteDestination] = Field(default_factory=list)
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: unsupported("delegate VirtualServices are not implemented") = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: list[HTTPMirrorPolicy] = Field(default_factory=list)
    mirror_percentage: Percent | None = None
    mirror_percent: unsupported("mirrorPercent is deprecated; use mirrorPercentage") = None
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None


class L4Match(Strict):
    destination_subnets: no_effect("Istio matches destinationSubnets on sidecars only; gateway listeners ignore it",
                                   list[str] | None) = None
    port: Port | None = None
    source_subnet: no_effect("Istio's gateway L4 matches use only port and gateways", str | None) = None
    source_labels: no_effect("Istio's gateway L4 matches use only port and gateways", dict[str, str] | None) = None
    gateways: list[str] = Field(default_factory=list)
    source_namespace: no_effect("Istio's gateway L4 matches use only port and gateways", str | None) = None


class TLSMatch(L4Match):
    sni_hosts: list[NonEmptyStr] = Field(min_length=1)


class TCPRoute(Strict):
    match: list[L4Match] = Field(default_factory=list)
    route: list[RouteDestination] = Field(default_factory=list)


class TLSRoute(Strict):
    match: list[TLSMatch] = Field(min_length=1)
    route: list[RouteDestination] = Field(default_factory=list)


class VirtualServiceSpec(Strict):
    hosts: list[NonEmptyStr] = Field(default_factory=list)
    gateways: list[str] = Field(default_factory=list)
    http: list[HTTPRoute] = Field(default_factory=list)
    tls: list[TLSRoute] = Field(default_factory=list)
    tcp: list[TCPRoute] = Field(default_factory=list)
    export_to: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------- DestinationRule
class ServicePort(Strict):
    number: Port
    protocol: str = "TCP"
    name: NonEmptyStr
    target_port: Port | None = None


class WorkloadEntry(Strict):
    """A ServiceEntry endpoint, and the spec of the WorkloadEntry kind."""

    address: str | None = None
    ports: dict[str, Port] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    network: no_effect("the gateway envoygen builds reaches every endpoint directly (one network)", str | None) = None
    locality: str | None = None  # region/zone/subzone, written into the cluster's locality_lb_endpoints
    weight: UInt32 | None = None
    service_account: no_effect("the identity an Istio sidecar presents; envoygen checks no SAN from it", str | None) = None


class WorkloadSelector(Strict):
    labels: dict[str, str] = Field(default_factory=dict)


class ServiceEntrySpec(Strict):
    hosts: list[NonEmptyStr] = Field(min_length=1)
    addresses: list[str] = Field(default_factory=list)
    ports: list[ServicePort] = Field(default_factory=list)
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"] = "MESH_EXTERNAL"
    resolution: Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"] = "NONE"
    endpoints: list[WorkloadEntry] = Field(default_factory=list)
    workload_selector: WorkloadSelector | None = None  # selects WorkloadEntries of the ServiceEntry's namespace
    export_to: list[str] = Field(default_factory=list)
    subject_alt_names: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------- top-level kinds
class _Resource(Strict):
    api_version: str
    kind: str
    metadata: Metadata
    status: Any = None  # output-only; ignored, as kubectl apply ignores it


class Gateway(_Resource):
    spec: GatewaySpec


class VirtualService(_Resource):
    spec: VirtualServiceSpec


class DestinationRule(_Resource):
    spec: DestinationRuleSpec


class ServiceEntry(_Resource):
    spec: ServiceEntrySpec


class WorkloadEntryResource(_Resource):
    """The WorkloadEntry kind (its spec is a ServiceEntry endpoint's shape)."""

    spec: WorkloadEntry
