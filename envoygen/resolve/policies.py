"""Which workload-scoped policies (AuthorizationPolicy, RequestAuthentication, ...) apply to a gateway workload.

Istio's ``WorkloadPolicyMatcher.ShouldAttachPolicy`` (pilot/pkg/model/policyattachment.go),
for the namespaces it looks in (the root namespace and the workload's own):
- a workload that is not a Kubernetes Gateway API gateway (no ``gateway.networking.k8s.io/gateway-name``
  label): a policy with ``targetRef(s)`` never applies; otherwise its ``selector.matchLabels`` must be a
  subset of the workload's labels (no selector: every workload of the namespace; in the root namespace,
  every workload);
- a Gateway API gateway workload: only ``targetRefs`` of kind ``Gateway``
  (``gateway.networking.k8s.io``) naming it, from a policy in its own namespace.
"""

from __future__ import annotations

from typing import Any

from ..model import Res
from ..workloads import Workload
from .registry import ROOT_NAMESPACE

GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"


def _target_refs(spec: Any) -> list[Any]:
    refs = list(getattr(spec, "target_refs", None) or [])
    if not refs and getattr(spec, "target_ref", None) is not None:
        refs = [spec.target_ref]
    return refs


def policy_applies(res: Res[Any], workload: Workload) -> bool:
    """Whether the policy ``res`` (any kind with ``selector``/``targetRefs``) attaches to ``workload``."""
    if res.namespace not in (ROOT_NAMESPACE, workload.namespace):
        return False
    spec = res.obj.spec
    refs = _target_refs(spec)
    gateway_name = workload.labels.get(GATEWAY_NAME_LABEL)
    if gateway_name is None:
        if refs:
            return False
        selector = spec.selector.match_labels if spec.selector is not None else {}
        return workload.selects(selector)
    for ref in refs:
        if res.namespace != workload.namespace or ref.namespace not in ("", workload.namespace):
            continue
        if ref.kind == "Gateway" and ref.group == "gateway.networking.k8s.io" and ref.name == gateway_name:
            return True
    return False


def policies_for(items: list[Res[Any]], workload: Workload) -> list[Res[Any]]:
    """The policies of ``items`` that attach to ``workload``, root namespace first, each by creation time."""
    chosen = [r for r in items if policy_applies(r, workload)]
    return sorted(chosen, key=lambda r: (r.namespace != ROOT_NAMESPACE, r.sort_key()))


def envoy_filter_applies(res: Res[Any], workload: Workload) -> bool:
    """EnvoyFilter: in the root namespace or the workload's, ``workloadSelector.labels`` ⊆ its labels
    (pilot/pkg/model/envoyfilter.go; no selector: every workload of that namespace, or of the mesh)."""
    if res.namespace not in (ROOT_NAMESPACE, workload.namespace):
        return False
    sel = res.obj.spec.workload_selector
    return workload.selects(sel.labels if sel is not None else {})


def envoy_filters_for(items: list[Res[Any]], workload: Workload) -> list[Res[Any]]:
    """Istio's order: priority, then root namespace before the workload's, then creation time and name."""
    chosen = [r for r in items if envoy_filter_applies(r, workload)]
    return sorted(chosen, key=lambda r: (r.obj.spec.priority, r.namespace != ROOT_NAMESPACE, r.sort_key()))


def telemetry_chain(items: list[Res[Any]], workload: Workload) -> list[Res[Any]]:
    """The Telemetries that shape ``workload``, least specific first (pilot/pkg/model/telemetry.go
    applicableTelemetries): the root namespace's namespace-wide one, its own namespace's, then the
    oldest one whose selector (or targetRefs) picks the workload."""
    def oldest(cands: list[Res[Any]]) -> list[Res[Any]]:
        return sorted(cands, key=lambda r: r.sort_key())[:1]

    def wide(r: Res[Any]) -> bool:
        s = r.obj.spec
        return (s.selector is None or not s.selector.match_labels) and not _target_refs(s)

    chain = oldest([r for r in items if r.namespace == ROOT_NAMESPACE and wide(r)])
    if workload.namespace != ROOT_NAMESPACE:
        chain += oldest([r for r in items if r.namespace == workload.namespace and wide(r)])
    chain += oldest([r for r in items if r.namespace == workload.namespace and not wide(r) and policy_applies(r, workload)])
    return chain
