"""AUTO_PASSTHROUGH servers (Istio's east-west and multi-network gateways).

The client (a sidecar of another network) sends Istio's SNI
``outbound_.<port>_.<subset>_.<host>`` and its own mTLS end to end; the gateway reads
the SNI and forwards the bytes to that cluster without terminating TLS.  As pilot's
gateway listener builder does for such a server, every service of the mesh the
server's hosts admit (ServiceEntries with ``location: MESH_EXTERNAL`` excluded) gets
one filter chain per port and per subset (the subset-less one included), matched on
that SNI, with a TCP proxy to ``outbound|<port>|<subset>|<host>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import ir, names
from ..resolve.registry import MergedRule, ServiceInfo, rule_for
from .context import Context

if TYPE_CHECKING:
    from .gateway import BoundServer


def auto_passthrough_chains(ctx: Context, bs: "BoundServer", registry: dict[str, ServiceInfo],
                            rules: dict[str, MergedRule], access_log: ir.AccessLog | None) -> list[ir.FilterChain]:
    out: list[ir.FilterChain] = []
    for host in sorted(registry):
        svc = registry[host]
        if svc.mesh_external or not bs.index_for(svc.namespace).intersect([host]):
            continue
        rule = rule_for(host, rules)
        subsets = [""] + [s.name for s in rule.subsets] if rule else [""]
        for port in sorted(svc.ports, key=lambda p: p.number):
            for subset in subsets:
                sni = names.mesh_sni(port.number, subset, host)
                cluster = names.cluster(port.number, subset, host)
                out.append(ir.FilterChain(name=sni, server_names=(sni,),
                                          tcp=ir.TcpProxy(cluster, (ir.WeightedCluster(cluster, 100),), access_log=access_log)))
    return out
