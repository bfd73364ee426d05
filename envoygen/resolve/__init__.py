"""Resolve: what one gateway workload sees, built once, every finding kept.

Between the model and the analyzer: for a workload, the service registry
(ServiceEntries honouring ``exportTo``, Kubernetes Services), the merged
DestinationRules visible to it, and the VirtualServices bound to each Gateway
in Istio's visibility order; and the TLS material the configuration names
(Secrets, ``--credentials-dir``, file paths), read and checked.  The analyzer reads this view; the translator
turns it into IR without building any of it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..diagnostics import Findings
from ..model import Res, Resources
from ..model.hosts import gateway_ref
from ..model.networking import VirtualService
from ..workloads import Workload
from .jwks import resolve_jwks
from .policies import envoy_filters_for, policies_for, telemetry_chain
from .material import Material, MaterialOptions, Ref
from .registry import ROOT_NAMESPACE, MergedRule, ServiceInfo, build_registry, merged_rules, rule_for

__all__ = ["View", "resolve", "resolve_namespace", "Material", "MaterialOptions", "Ref", "MergedRule", "ServiceInfo", "rule_for", "ROOT_NAMESPACE"]


def _bound_by_gateway(resources: Resources) -> dict[str, list[Res[VirtualService]]]:
    """Every VirtualService under each Gateway key it names (one pass over all of them)."""
    out: dict[str, list[Res[VirtualService]]] = {}
    for vs in resources.virtual_services:
        for key in sorted({gateway_ref(g, vs.namespace) for g in vs.obj.spec.gateways}):
            out.setdefault(key, []).append(vs)
    return out


def _visibility_order(bound: list[Res[VirtualService]], ns: str) -> list[Res[VirtualService]]:
    """VirtualServicesForGateway: private to the proxy namespace, exported to it, public; each by creation."""
    bound = sorted(bound, key=lambda v: v.sort_key())

    def targets(v: Res[VirtualService]) -> set[str]:
        return {v.namespace if e == "." else e for e in v.obj.spec.export_to}

    # initVirtualServices: "." (or the VS's own namespace) is private to that namespace
    private = [v for v in bound if v.obj.spec.export_to and v.namespace == ns and ns in targets(v)]
    exported = [v for v in bound if v.obj.spec.export_to and "*" not in targets(v)
                and v not in private and ns in targets(v)]
    public = [v for v in bound if (not v.obj.spec.export_to or "*" in targets(v))]
    return private + exported + [v for v in public if v not in private and v not in exported]


@dataclass
class View:
    """What one gateway workload sees."""

    resources: Resources
    workload: Workload
    registry: dict[str, ServiceInfo]
    rules: dict[str, MergedRule]
    material: Material  # TLS material named by the configuration: read and checked here, never in translate
    authorization_policies: list[Res[Any]] = field(default_factory=list)  # those attached to this workload
    request_authentications: list[Res[Any]] = field(default_factory=list)
    jwks: dict[str, str] = field(default_factory=dict)  # jwksUri → the JWKS read at build time
    envoy_filters: list[Res[Any]] = field(default_factory=list)  # attached EnvoyFilters, in patch order
    telemetries: list[Res[Any]] = field(default_factory=list)  # root, namespace, workload: least specific first
    _bound: dict[str, list[Res[VirtualService]]] = field(default_factory=dict, repr=False)
    _ordered: dict[str, list[Res[VirtualService]]] = field(default_factory=dict, repr=False)

    def virtual_services_for(self, gateway_key: str) -> list[Res[VirtualService]]:
        """The VirtualServices bound to Gateway ``ns/name``, in the order Istio merges them."""
        if gateway_key not in self._ordered:
            self._ordered[gateway_key] = _visibility_order(self._bound.get(gateway_key, []), self.workload.namespace)
        return self._ordered[gateway_key]

    def rule_for(self, host: str) -> MergedRule | None:
        return rule_for(host, self.rules)


def resolve_namespace(resources: Resources, namespace: str, findings: Findings) -> tuple[dict[str, ServiceInfo], dict[str, MergedRule]]:
    """Registry and merged DestinationRules as seen from ``namespace``."""
    return build_registry(resources, findings, namespace), merged_rules(resources, namespace, findings)


def resolve(resources: Resources, workload: Workload, findings: Findings,
            material: MaterialOptions | None = None) -> View:
    registry, rules = resolve_namespace(resources, workload.namespace, findings)
    material = material or MaterialOptions()
    authn = policies_for(resources.request_authentications, workload)
    return View(resources, workload, registry, rules,
                Material(resources, workload.namespace, material, findings),
                authorization_policies=policies_for(resources.authorization_policies, workload),
                request_authentications=authn,
                envoy_filters=envoy_filters_for(resources.envoy_filters, workload),
                telemetries=telemetry_chain(resources.telemetries, workload),
                jwks=resolve_jwks(authn, dict(material.jwks_files), material.jwks_fetch, findings),
                _bound=_bound_by_gateway(resources))


def summary(view: View) -> dict:
    """What the view holds, as plain JSON values (the resolve stage's golden files, ``envoygen ir``)."""
    def policy(p: object) -> object:
        return p.model_dump(by_alias=True, exclude_none=True, mode="json") if p is not None else None  # type: ignore[attr-defined]

    registry = {
        host: {
            "namespace": s.namespace, "origin": s.origin, "resolution": s.resolution,
            "ports": [[p.number, p.name, p.protocol, p.target] for p in s.ports],
            "endpoints": [[e.address, dict(sorted(e.ports.items())), dict(sorted(e.labels.items())), e.weight]
                          for e in s.endpoints],
        }
        for host, s in sorted(view.registry.items())
    }
    rules = {
        host: {"rules": [r.key for r in m.rules], "trafficPolicy": policy(m.traffic_policy),
               "subsets": [policy(s) for s in m.subsets]}
        for host, m in sorted(view.rules.items())
    }
    gateways = sorted(g.key for g in view.resources.gateways if view.workload.selects(g.obj.spec.selector))
    return {
        "workload": {"name": view.workload.name, "namespace": view.workload.namespace,
                     "labels": dict(sorted(view.workload.labels.items()))},
        "registry": registry,
        "destinationRules": rules,
        "virtualServices": {g: [v.key for v in view.virtual_services_for(g)] for g in gateways},
        **({"authorizationPolicies": [p.key for p in view.authorization_policies]} if view.authorization_policies else {}),
        **({"requestAuthentications": [p.key for p in view.request_authentications]}
           if view.request_authentications else {}),
    }
