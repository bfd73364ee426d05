"""Gateway workloads: which Envoy instances to build, and where their ports bind.

Without an IstioOperator there is one workload, Istio's default ingress gateway
(``istio=ingressgateway,app=istio-ingressgateway`` in ``istio-system``, whose
Service maps 80→8080 and 443→8443).  An IstioOperator's enabled
``components.ingressGateways`` replace it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .diagnostics import Findings
from .model import Res, Resources
from .model.operator import IstioOperator, MeshConfig

DEFAULT_NAME = "istio-ingressgateway"
DEFAULT_NAMESPACE = "istio-system"
DEFAULT_LABELS = {"istio": "ingressgateway", "app": "istio-ingressgateway"}
DEFAULT_PORTS = {80: 8080, 443: 8443}


@dataclass(frozen=True)
class Workload:
    name: str
    namespace: str
    labels: dict[str, str]
    service_ports: dict[int, int]  # service port → targetPort
    mesh: MeshConfig = field(default_factory=MeshConfig)
    default_ports: bool = True  # True: Istio's default Service (80→8080, 443→8443, others as is)

    def bind_port(self, server_port: int, port_map: dict[int, int]) -> int:
        if server_port in port_map:
            return port_map[server_port]
        return self.service_ports.get(server_port, server_port)

    def selects(self, selector: dict[str, str]) -> bool:
        return all(self.labels.get(k) == v for k, v in selector.items())


def workloads_from(resources: Resources, findings: Findings) -> list[Workload]:
    if not resources.operators:
        return [Workload(DEFAULT_NAME, DEFAULT_NAMESPACE, dict(DEFAULT_LABELS), dict(DEFAULT_PORTS))]
    if len(resources.operators) > 1:
        r = resources.operators[1]
        findings.error(r.file, r.doc.line, "EG0105",
                       f"only one IstioOperator is supported; {resources.operators[0].key} is already read")
        return []
    op: Res[IstioOperator] = resources.operators[0]
    mesh = op.obj.spec.mesh_config or MeshConfig()
    comps = op.obj.spec.components
    gateways = comps.ingress_gateways if comps else []
    out: list[Workload] = []
    for i, g in enumerate(gateways):
        if not g.enabled:
            continue
        labels = dict(g.label) if g.label else {"istio": "ingressgateway", "app": g.name}
        if g.k8s and g.k8s.service and g.k8s.service.ports:
            ports = {p.port: (p.target_port or p.port) for p in g.k8s.service.ports if p.protocol == "TCP"}
            default = False
        else:
            ports, default = dict(DEFAULT_PORTS), True
        out.append(Workload(g.name, g.namespace, labels, ports, mesh, default))
    if not out:
        if any(g.name == DEFAULT_NAME for g in gateways):
            findings.error(op.file, op.line("spec", "components", "ingressGateways"), "EG0210",
                           "IstioOperator enables no ingress gateway; nothing to build",
                           "spec.components.ingressGateways")
            return []
        # the default profile enables istio-ingressgateway unless it is listed disabled
        out.append(Workload(DEFAULT_NAME, DEFAULT_NAMESPACE, dict(DEFAULT_LABELS), dict(DEFAULT_PORTS), mesh))
    return out
