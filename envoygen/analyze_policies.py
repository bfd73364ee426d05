"""Checks on the workload-scoped policy kinds (AuthorizationPolicy, ...), over every gateway workload."""

from __future__ import annotations

from typing import Any, Callable

from .diagnostics import Findings
from .model import Res, Resources
from .resolve.policies import envoy_filter_applies, policy_applies
from .workloads import Workload


def _check_selects(kind: str, items: list[Res[Any]], workloads: list[Workload], f: Findings,
                   applies: Callable[[Res[Any], Workload], bool] = policy_applies) -> None:
    """EG0215: a policy that attaches to no gateway workload changes nothing in any bundle."""
    for r in items:
        if any(applies(r, w) for w in workloads):
            continue
        known = "; ".join(f"{w.namespace}/{w.name}" for w in workloads)
        f.warning(r.file, r.doc.line, "EG0215",
                  f"{kind} {r.key} applies to no gateway workload ({known}): check its namespace, selector "
                  "or targetRefs; it has no effect on these bundles", "spec")


def _check_authorization(resources: Resources, f: Findings) -> None:
    for p in resources.authorization_policies:
        spec = p.obj.spec
        if spec.action == "CUSTOM":
            f.error(p.file, p.line("spec", "action"), "EG0217",
                    f"AuthorizationPolicy {p.key}: action CUSTOM delegates to an ext_authz extension provider, "
                    "which envoygen does not implement; without it the gateway would skip this check", "spec.action")
        elif spec.provider is not None:
            f.error(p.file, p.line("spec", "provider"), "EG0106",
                    f"AuthorizationPolicy {p.key}: provider is only valid with action CUSTOM", "spec.provider")


# applyTo → the operations envoygen applies (Istio's envoyfilter package supports these for a gateway)
_LIST_OPS = ("ADD", "REMOVE", "MERGE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE")
PATCH_OPS = {
    "LISTENER": ("ADD", "REMOVE", "MERGE"), "FILTER_CHAIN": ("ADD", "REMOVE", "MERGE"),
    "NETWORK_FILTER": _LIST_OPS, "HTTP_FILTER": _LIST_OPS, "ROUTE_CONFIGURATION": ("MERGE",),
    "VIRTUAL_HOST": ("ADD", "REMOVE", "MERGE"), "HTTP_ROUTE": _LIST_OPS, "CLUSTER": ("ADD", "REMOVE", "MERGE"),
    "EXTENSION_CONFIG": ("ADD",),  # resolved statically: filters naming it by config_discovery get it inline
}
_WHY = {"BOOTSTRAP": "bootstrap patches are not implemented", "LISTENER_FILTER": "listener filter patches are not implemented",
        "INVALID": "applyTo is required"}


def _check_envoy_filters(resources: Resources, f: Findings) -> None:
    for ef in resources.envoy_filters:
        for i, cp in enumerate(ef.obj.spec.config_patches):
            base = ("spec", "configPatches", i)
            where = f"spec.configPatches[{i}]"
            ops = PATCH_OPS.get(cp.apply_to)
            if ops is None:
                f.error(ef.file, ef.line(*base, "applyTo"), "EG0221",
                        f"EnvoyFilter {ef.key}: applyTo {cp.apply_to} is not applied: {_WHY[cp.apply_to]}", f"{where}.applyTo")
            elif cp.patch.operation not in ops:
                f.error(ef.file, ef.line(*base, "patch", "operation"), "EG0221",
                        f"EnvoyFilter {ef.key}: operation {cp.patch.operation} is not applied to {cp.apply_to} "
                        f"(supported: {', '.join(ops)})", f"{where}.patch.operation")
            elif cp.patch.operation != "REMOVE" and not cp.patch.value:
                f.error(ef.file, ef.line(*base, "patch"), "EG0103",
                        f"EnvoyFilter {ef.key}: {cp.patch.operation} needs patch.value", f"{where}.patch.value")
            elif cp.apply_to == "EXTENSION_CONFIG" and not (
                    isinstance(cp.patch.value.get("name"), str)
                    and isinstance(cp.patch.value.get("typed_config", cp.patch.value.get("typedConfig")), dict)):
                f.error(ef.file, ef.line(*base, "patch", "value"), "EG0102",
                        f"EnvoyFilter {ef.key}: an EXTENSION_CONFIG value needs a name and a typed_config",
                        f"{where}.patch.value")
            if cp.match is not None and cp.match.context not in ("ANY", "GATEWAY"):
                f.warning(ef.file, ef.line(*base, "match", "context"), "EG0218",
                          f"EnvoyFilter {ef.key}: context {cp.match.context} does not apply to a gateway; patch skipped",
                          f"{where}.match.context")


def check_policies(resources: Resources, workloads: list[Workload], f: Findings) -> None:
    _check_authorization(resources, f)
    _check_selects("AuthorizationPolicy", resources.authorization_policies, workloads, f)
    _check_selects("RequestAuthentication", resources.request_authentications, workloads, f)
    _check_envoy_filters(resources, f)
    _check_selects("EnvoyFilter", resources.envoy_filters, workloads, f, envoy_filter_applies)
    _check_selects("Telemetry", resources.telemetries, workloads, f)
