"""networking.istio.io EnvoyFilter (v1alpha3): the patches envoygen applies to a gateway's final config.

Match fields envoygen does not evaluate are refused by name (EG0104); ``applyTo``/``operation``
pairs it does not apply are refused by the analyzer (EG0221)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .base import Metadata, Strict, unsupported

APPLY_TO = Literal["LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER", "ROUTE_CONFIGURATION", "VIRTUAL_HOST",
                   "HTTP_ROUTE", "CLUSTER", "EXTENSION_CONFIG", "BOOTSTRAP", "LISTENER_FILTER", "INVALID"]
OPERATION = Literal["MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE", "INVALID"]


class SubFilterMatch(Strict):
    name: str = ""


class FilterMatch(Strict):
    name: str = ""
    sub_filter: SubFilterMatch | None = None


class FilterChainMatch(Strict):
    name: str = ""
    sni: str = ""
    filter: FilterMatch | None = None
    transport_protocol: unsupported("filterChain.transportProtocol is not evaluated by envoygen") = None
    application_protocols: unsupported("filterChain.applicationProtocols is not evaluated by envoygen") = None
    destination_port: unsupported("filterChain.destinationPort is not evaluated by envoygen") = None


class ListenerMatch(Strict):
    port_number: int = Field(default=0, ge=0, le=65535)
    port_name: unsupported("listener.portName is deprecated in Istio and not evaluated by envoygen") = None
    name: str = ""
    filter_chain: FilterChainMatch | None = None
    listener_filter: unsupported("listener.listenerFilter is not evaluated by envoygen") = None


class RouteMatch(Strict):
    name: str = ""
    action: unsupported("vhost.route.action is not evaluated by envoygen") = None


class VirtualHostMatch(Strict):
    name: str = ""
    domain_name: unsupported("vhost.domainName is not evaluated by envoygen") = None
    route: RouteMatch | None = None


class RouteConfigurationMatch(Strict):
    port_number: int = Field(default=0, ge=0, le=65535)
    port_name: str = ""
    gateway: str = ""
    name: str = ""
    vhost: VirtualHostMatch | None = None


class ClusterMatch(Strict):
    port_number: int = Field(default=0, ge=0, le=65535)
    service: str = ""
    subset: str = ""
    name: str = ""


class PatchMatch(Strict):
    context: Literal["ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY", "WAYPOINT"] = "ANY"
    proxy: unsupported("match.proxy (proxy version and metadata) is not evaluated by envoygen") = None
    listener: ListenerMatch | None = None
    route_configuration: RouteConfigurationMatch | None = None
    cluster: ClusterMatch | None = None


class Patch(Strict):
    operation: OPERATION = "INVALID"
    value: dict[str, Any] | None = None
    filter_class: unsupported("patch.filterClass (Wasm ordering) is not implemented") = None


class ConfigPatch(Strict):
    apply_to: APPLY_TO = "INVALID"
    match: PatchMatch | None = None
    patch: Patch = Field(default_factory=Patch)


class WorkloadSelector(Strict):
    labels: dict[str, str] = Field(default_factory=dict)


class EnvoyFilterSpec(Strict):
    workload_selector: WorkloadSelector | None = None
    target_refs: unsupported("targetRefs (Gateway API gateways and waypoints) is not implemented for EnvoyFilter") = None
    config_patches: list[ConfigPatch] = Field(default_factory=list)
    priority: int = 0


class EnvoyFilter(Strict):
    api_version: str
    kind: Literal["EnvoyFilter"]
    metadata: Metadata
    spec: EnvoyFilterSpec = Field(default_factory=EnvoyFilterSpec)
    status: Any = None
