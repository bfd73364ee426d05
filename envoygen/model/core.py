"""Kubernetes core/v1 Service and Secret: the parts a gateway compiler reads."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .base import Metadata, Port, Strict, unsupported


class ServicePortSpec(Strict):
    name: str | None = None
    port: Port
    target_port: Port | str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    node_port: int | None = None
    app_protocol: str | None = None


class ServiceSpec(Strict):
    ports: list[ServicePortSpec] = Field(default_factory=list)
    selector: dict[str, str] = Field(default_factory=dict)
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"
    external_name: unsupported("ExternalName Services are not implemented; use a ServiceEntry with resolution DNS") = None
    # scheduling / cloud fields without effect on the gateway's config
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    cluster_ips: list[str] | None = Field(default=None, alias="clusterIPs")
    session_affinity: str | None = None
    external_traffic_policy: str | None = None
    internal_traffic_policy: str | None = None
    ip_families: list[str] | None = None
    ip_family_policy: str | None = None
    load_balancer_ip: str | None = Field(default=None, alias="loadBalancerIP")
    load_balancer_source_ranges: list[str] | None = None
    publish_not_ready_addresses: bool | None = None
    health_check_node_port: int | None = None
    allocate_load_balancer_node_ports: bool | None = None
    load_balancer_class: str | None = None
    session_affinity_config: Any = None
    external_i_ps: list[str] | None = Field(default=None, alias="externalIPs")
    traffic_distribution: str | None = None


class Service(Strict):
    api_version: Literal["v1"]
    kind: Literal["Service"]
    metadata: Metadata
    spec: ServiceSpec
    status: Any = None


class Secret(Strict):
    api_version: Literal["v1"]
    kind: Literal["Secret"]
    metadata: Metadata
    type: str = "Opaque"
    data: dict[str, str] = Field(default_factory=dict)
    string_data: dict[str, str] = Field(default_factory=dict)
    immutable: bool | None = None
