"""``--workload-address``: where the pods of the input's Deployments, StatefulSets,
DaemonSets and Pods run, as WorkloadEntries.

envoygen has no view of a cluster's pods.  A Kubernetes Service's ``selector`` picks
WorkloadEntries as Istio does (``resolve/registry.py``), so a subset such as
bookinfo's ``version: v2`` finds its endpoints when the input carries WorkloadEntries,
or when ``--workload-address reviews-v2=10.0.0.12`` names a Deployment of the input:
that option becomes a WorkloadEntry ``reviews-v2`` with the Deployment's pod-template
labels and that address (``ADDR:PORT``: that port for every port of the Services that
select it, for workloads listening on one address, as in tests).
"""

from __future__ import annotations

import yaml

from ..diagnostics import Findings
from ..load import Document
from ..model import PodTemplate, Res, Resources
from ..model.networking import WorkloadEntryResource

OPTION = "--workload-address"


def _find(resources: Resources, name: str, default_ns: str) -> list[PodTemplate]:
    """``ns/name``: that one; ``name``: the one in the default namespace, else the only one of that name."""
    ns, _, short = name.rpartition("/")
    same = [p for p in resources.pod_templates if p.name == short]
    if ns:
        return [p for p in same if p.namespace == ns]
    local = [p for p in same if p.namespace == default_ns]
    return local or (same if len(same) == 1 else [])


def _ports(resources: Resources, pod: PodTemplate, port: int | None) -> dict[str, int]:
    if port is None:
        return {}
    out: dict[str, int] = {}
    for svc in resources.services:
        sel = svc.obj.spec.selector
        if svc.namespace == pod.namespace and sel and all(pod.labels.get(k) == v for k, v in sel.items()):
            for p in svc.obj.spec.ports:
                out[p.name or ""] = port
    return out


def add_workload_addresses(resources: Resources, given: tuple[tuple[str, str, int | None], ...], default_ns: str,
                           findings: Findings) -> None:
    for name, address, port in given:
        pods = _find(resources, name, default_ns)
        if not pods:
            known = ", ".join(f"{p.kind} {p.namespace}/{p.name}" for p in resources.pod_templates) or "none"
            findings.error(OPTION, 0, "EG0230", f"{OPTION} {name}={address}: no Deployment, StatefulSet, DaemonSet or Pod "
                           f"named {name} in the input (known: {known})")
            continue
        for pod in pods:
            data = {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
                    "metadata": {"name": pod.name, "namespace": pod.namespace},
                    "spec": {"address": address, "labels": dict(pod.labels), "ports": _ports(resources, pod, port)}}
            obj = WorkloadEntryResource.model_validate(data)
            doc = Document(f"{OPTION} {name}", 0, 0, data)
            resources.workload_entries.append(Res(obj, doc, pod.namespace))


def workload_entry_yaml(name: str, namespace: str, labels: dict[str, str]) -> str:
    """The WorkloadEntry to add for a subset that selects nothing (one line, flow style)."""
    doc = {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
           "metadata": {"name": name, "namespace": namespace}, "spec": {"address": "<IP of the pods>", "labels": labels}}
    return yaml.safe_dump(doc, default_flow_style=True, sort_keys=False, width=10_000).strip()
