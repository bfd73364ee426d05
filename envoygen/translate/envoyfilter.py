"""EnvoyFilter → ``ir.ConfigPatch``es for one gateway workload, in Istio's order (priority, root namespace
first, creation time). Patches whose context is not GATEWAY or ANY do not apply to a gateway, as in Istio;
the analyzer reports those and refuses the applyTo/operation pairs envoygen cannot apply (EG0221)."""

from __future__ import annotations

import json
import re
from typing import Any

from .. import ir
from ..model import Res

GATEWAY_CONTEXTS = ("ANY", "GATEWAY")
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def snake_keys(value: Any) -> Any:
    """Protobuf JSON accepts camelCase; the rendered bootstrap uses snake_case, so MERGE must too."""
    if isinstance(value, dict):
        return {(k if k.startswith("@") else _CAMEL.sub(r"_\1", k).lower()): snake_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [snake_keys(v) for v in value]
    return value


def _patch(ef: Res[Any], i: int, cp: Any) -> ir.ConfigPatch:
    m = cp.match
    lst = m.listener if m else None
    fc = lst.filter_chain if lst else None
    flt = fc.filter if fc else None
    rc = m.route_configuration if m else None
    vh = rc.vhost if rc else None
    cl = m.cluster if m else None
    value = json.dumps(snake_keys(cp.patch.value), sort_keys=True) if cp.patch.value is not None else ""
    return ir.ConfigPatch(
        apply_to=cp.apply_to, operation=cp.patch.operation, value=value,
        origin=f"{ef.file}:{ef.line('spec', 'configPatches', i)}", label=f"EnvoyFilter {ef.key} configPatches[{i}]",
        listener_port=lst.port_number if lst else 0, listener_name=lst.name if lst else "",
        chain_name=fc.name if fc else "", chain_sni=fc.sni if fc else "",
        filter_name=flt.name if flt else "",
        sub_filter_name=flt.sub_filter.name if flt and flt.sub_filter else "",
        route_config_name=rc.name if rc else "", route_config_port=rc.port_number if rc else 0,
        route_port_name=rc.port_name if rc else "", route_gateway=rc.gateway if rc else "",
        vhost_name=vh.name if vh else "", route_name=vh.route.name if vh and vh.route else "",
        cluster_name=cl.name if cl else "", cluster_service=cl.service if cl else "",
        cluster_port=cl.port_number if cl else 0, cluster_subset=cl.subset if cl else "",
    )


def build_patches(filters: list[Res[Any]]) -> tuple[ir.ConfigPatch, ...]:
    out = []
    for ef in filters:
        for i, cp in enumerate(ef.obj.spec.config_patches):
            if cp.match is not None and cp.match.context not in GATEWAY_CONTEXTS:
                continue
            out.append(_patch(ef, i, cp))
    return tuple(out)
