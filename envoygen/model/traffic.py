"""networking.istio.io DestinationRule traffic policy: load balancing, connection
pools, outlier detection, client TLS, subsets (the types DestinationRuleSpec is
made of).  Same rules as :mod:`.networking`: every Istio field declared,
unsupported ones with the reason."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import Duration, Int32, NonEmptyStr, Port, PositiveDuration, Strict, UInt32, unsupported


class PortSelector(Strict):
    number: Port


class HTTPCookie(Strict):
    name: NonEmptyStr
    path: str | None = None
    ttl: Duration | None = None
    attributes: unsupported("cookie attributes are not implemented") = None


class RingHash(Strict):
    minimum_ring_size: UInt32 | None = None


class Maglev(Strict):
    table_size: UInt32 | None = None


class ConsistentHash(Strict):
    http_header_name: str | None = None
    http_cookie: HTTPCookie | None = None
    use_source_ip: bool | None = None
    http_query_parameter_name: str | None = None
    ring_hash: RingHash | None = None
    maglev: Maglev | None = None
    minimum_ring_size: UInt32 | None = None

    @model_validator(mode="after")
    def _one(self) -> "ConsistentHash":
        keys = [self.http_header_name, self.http_cookie, self.use_source_ip or None, self.http_query_parameter_name]
        if sum(k is not None for k in keys) != 1:
            raise ValueError("set exactly one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName")
        return self


class LoadBalancer(Strict):
    simple: Literal["UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"] | None = None
    consistent_hash: ConsistentHash | None = None
    locality_lb_setting: unsupported("locality load balancing needs locality-labelled endpoints; not implemented") = None
    zone_aware_lb_setting: unsupported("zone-aware load balancing (zoneAwareLbSetting) is not implemented") = None
    warmup_duration_secs: unsupported("warmup is not implemented") = None
    warmup: unsupported("warmup is not implemented") = None

    @model_validator(mode="after")
    def _one(self) -> "LoadBalancer":
        if self.simple is not None and self.consistent_hash is not None:
            raise ValueError("set only one of simple and consistentHash")
        return self


class TcpKeepalive(Strict):
    probes: UInt32 | None = None
    time: PositiveDuration | None = None
    interval: PositiveDuration | None = None


class TCPSettings(Strict):
    max_connections: Int32 | None = None
    connect_timeout: PositiveDuration | None = None
    tcp_keepalive: TcpKeepalive | None = None
    max_connection_duration: PositiveDuration | None = None
    idle_timeout: Duration | None = None


class HTTPSettings(Strict):
    http1_max_pending_requests: Int32 | None = None
    http2_max_requests: Int32 | None = None
    max_requests_per_connection: Int32 | None = None
    max_retries: Int32 | None = None
    idle_timeout: Duration | None = None
    h2_upgrade_policy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] | None = None
    use_client_protocol: bool | None = None
    max_concurrent_streams: Int32 | None = None
    http2_keep_alive: unsupported("HTTP/2 keepalive pings (http2KeepAlive) are not implemented") = None


class ConnectionPool(Strict):
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


class OutlierDetection(Strict):
    split_external_local_origin_errors: bool | None = None
    consecutive_local_origin_failures: UInt32 | None = None
    consecutive_gateway_errors: UInt32 | None = None
    consecutive5xx_errors: UInt32 | None = Field(default=None, alias="consecutive5xxErrors")
    consecutive_errors: unsupported("consecutiveErrors is deprecated; use consecutive5xxErrors") = None
    interval: PositiveDuration | None = None
    base_ejection_time: PositiveDuration | None = None
    max_ejection_percent: int | None = Field(default=None, ge=0, le=100)
    min_health_percent: int | None = Field(default=None, ge=0, le=100)
    outlier_detection_http_error_codes: unsupported("outlierDetectionHttpErrorCodes is not implemented") = None


class ClientTLS(Strict):
    mode: Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"] = "DISABLE"
    client_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    credential_name: str | None = None
    subject_alt_names: list[str] = Field(default_factory=list)
    sni: str | None = None
    insecure_skip_verify: bool | None = None
    ca_crl: str | None = None


class PortTrafficPolicy(Strict):
    port: PortSelector
    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLS | None = None


class TrafficPolicy(Strict):
    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLS | None = None
    port_level_settings: list[PortTrafficPolicy] = Field(default_factory=list)
    tunnel: unsupported("tunnel settings are not implemented") = None
    proxy_protocol: unsupported("upstream proxyProtocol is not implemented") = None
    retry_budget: unsupported("retryBudget is not implemented") = None


class Subset(Strict):
    name: NonEmptyStr
    labels: dict[str, str] = Field(default_factory=dict)
    traffic_policy: TrafficPolicy | None = None


class DestinationRuleSpec(Strict):
    host: NonEmptyStr
    traffic_policy: TrafficPolicy | None = None
    subsets: list[Subset] = Field(default_factory=list)
    export_to: list[str] = Field(default_factory=list)
    workload_selector: unsupported("workloadSelector on DestinationRules applies to sidecars") = None


# ---------------------------------------------------------------- ServiceEntry
