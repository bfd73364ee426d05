"""Checks on the workload-scoped policy kinds (AuthorizationPolicy, ...), over every gateway workload."""

from __future__ import annotations

from typing import Any

from .diagnostics import Findings
from .model import Res, Resources
from .resolve.policies import policy_applies
from .workloads import Workload


def _check_selects(kind: str, items: list[Res[Any]], workloads: list[Workload], f: Findings) -> None:
    """EG0215: a policy that attaches to no gateway workload changes nothing in any bundle."""
    for r in items:
        if any(policy_applies(r, w) for w in workloads):
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


def check_policies(resources: Resources, workloads: list[Workload], f: Findings) -> None:
    _check_authorization(resources, f)
    _check_selects("AuthorizationPolicy", resources.authorization_policies, workloads, f)
    _check_selects("RequestAuthentication", resources.request_authentications, workloads, f)
