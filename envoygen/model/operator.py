"""install.istio.io/v1alpha1 IstioOperator: the parts that shape ingress gateways.

Read: ``components.ingressGateways[]`` (name, enabled, namespace, label,
``k8s.service.ports``) and the ``meshConfig`` fields a gateway's Envoy config
depends on.  Parts that configure other components (pilot, CNI, egress
gateways, Helm ``values``) are reported as skipped by the model layer, because
they do not change the ingress gateway.  Gateway-affecting meshConfig fields
envoygen does not implement are refused (EG0104).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .base import DnsLabel, DnsSubdomain, Duration, Loose, Metadata, NonEmptyStr, Port, PositiveDuration, Strict, no_effect, unsupported


class OperatorServicePort(Strict):
    name: str | None = None
    port: Port
    target_port: Port | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    node_port: int | None = None


class OperatorService(Loose):
    ports: list[OperatorServicePort] = Field(default_factory=list)


class GatewayK8s(Loose):
    service: OperatorService | None = None


class GatewayComponent(Strict):
    name: DnsSubdomain  # the gateway's Deployment: also its workload name in the bootstrap
    enabled: bool = False
    namespace: DnsLabel = "istio-system"
    label: dict[str, str] = Field(default_factory=dict)
    k8s: GatewayK8s | None = Field(default=None, alias="k8s")
    hub: no_effect("the image comes from envoygen build", str | None) = None
    tag: no_effect("the image comes from envoygen build") = None


class Components(Loose):
    ingress_gateways: list[GatewayComponent] = Field(default_factory=list)


class RetryPolicy(Strict):
    attempts: int = Field(ge=0)
    per_try_timeout: PositiveDuration | None = None
    retry_on: str | None = None
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None


class GatewayTopology(Strict):
    num_trusted_proxies: int | None = Field(default=None, ge=0)
    forward_client_cert_details: unsupported("forwardClientCertDetails other than the default is not implemented") = None
    proxy_protocol: unsupported("proxy protocol on gateway listeners is not implemented") = None


class ProxyConfig(Strict):
    gateway_topology: GatewayTopology | None = None
    # fields about the istio-proxy sidecar/agent that do not shape this config
    discovery_address: no_effect("there is no xDS server; the bootstrap is static", str | None) = None
    tracing: unsupported("tracing is not emitted by envoygen") = None
    hold_application_until_proxy_starts: no_effect("applies to sidecars", bool | None) = None
    termination_drain_duration: no_effect("the image drains for ENVOYGEN_DRAIN_SECONDS (docs/image.md)", Duration | None) = None
    proxy_metadata: no_effect("pilot-agent metadata; there is no pilot-agent", dict[str, str] | None) = None


class LogFormat(Strict):
    text: str | None = None
    labels: dict[str, str] | None = None


class FileAccessLogProvider(Strict):
    path: str = "/dev/stdout"
    log_format: LogFormat | None = None


class ExtensionProvider(Strict):
    name: NonEmptyStr
    envoy_file_access_log: FileAccessLogProvider | None = None
    envoy_ext_authz_http: unsupported("ext_authz providers are not implemented") = None
    envoy_ext_authz_grpc: unsupported("ext_authz providers are not implemented") = None
    zipkin: unsupported("tracing providers are not implemented") = None
    datadog: unsupported("tracing providers are not implemented") = None
    stackdriver: unsupported("tracing providers are not implemented") = None
    opencensus: unsupported("tracing providers are not implemented") = None
    skywalking: unsupported("tracing providers are not implemented") = None
    opentelemetry: unsupported("tracing providers are not implemented") = None
    prometheus: unsupported("metrics providers are not implemented") = None
    envoy_http_als: unsupported("gRPC access log services are not implemented") = None
    envoy_tcp_als: unsupported("gRPC access log services are not implemented") = None
    envoy_otel_als: unsupported("OpenTelemetry access logs are not implemented") = None
    sds: unsupported("SDS providers are not implemented") = None


class DefaultProviders(Strict):
    access_logging: list[str] = Field(default_factory=list)
    tracing: unsupported("tracing providers are not implemented") = None
    metrics: unsupported("metrics providers are not implemented") = None


class MeshConfig(Strict):
    access_log_file: str = ""
    access_log_encoding: Literal["TEXT", "JSON"] = "TEXT"
    access_log_format: str = ""
    connect_timeout: PositiveDuration | None = None
    dns_refresh_rate: PositiveDuration | None = None
    default_http_retry_policy: RetryPolicy | None = None
    enable_tracing: no_effect("envoygen emits no tracing (no collector at an air-gapped edge; docs/istio-fidelity.md)",
                              bool | None) = None
    default_config: ProxyConfig | None = None
    h2_upgrade_policy: Literal["DO_NOT_UPGRADE", "UPGRADE"] | None = None
    path_normalization: unsupported("pathNormalization other than DEFAULT is not implemented") = None
    outbound_traffic_policy: no_effect("sidecar egress policy") = None
    enable_auto_mtls: no_effect("mesh mTLS to sidecar endpoints", bool | None) = None
    trust_domain: no_effect("mesh identities", str | None) = None
    root_namespace: no_effect("DestinationRules are looked up in creation order (docs/istio-fidelity.md)", str | None) = None
    extension_providers: list[ExtensionProvider] = Field(default_factory=list)
    default_providers: DefaultProviders | None = None
    tls_defaults: unsupported("meshConfig.tlsDefaults is not implemented") = None


class OperatorSpec(Loose):
    profile: no_effect("profiles install Istio components; only ingressGateways and meshConfig are read", str | None) = None
    namespace: str | None = None
    revision: no_effect("there is no control plane", str | None) = None
    hub: no_effect("the image comes from envoygen build", str | None) = None
    tag: no_effect("the image comes from envoygen build") = None
    mesh_config: MeshConfig | None = None
    components: Components | None = None


class IstioOperator(Strict):
    api_version: Literal["install.istio.io/v1alpha1"]
    kind: Literal["IstioOperator"]
    metadata: Metadata
    spec: OperatorSpec = Field(default_factory=OperatorSpec)
    status: Any = None
