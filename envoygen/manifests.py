"""``envoygen manifests``: run a built gateway image as N replicas on an engine the
user already has: Kubernetes manifests, or a Compose file for one Docker host.

Kubernetes: a Deployment (readiness on the readiness port, a preStop pause and a
termination grace that covers envoygen-init's drain, uid 101, read-only root
filesystem, resource requests), a Service with the gateway's ports, a
PodDisruptionBudget, optionally a HorizontalPodAutoscaler, and each credential
as a Secret mounted at ``<install-dir>/certs/<credential>``: the directory the
SDS files watch (``watched_directory``), so Kubernetes' atomic ``..data`` swap of
an updated Secret rotates the certificate without a restart (docs/rotation.md).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError
from .proxyconfig import load

PRESTOP_SECONDS = 5  # endpoints leave the Service's load balancers before SIGTERM


def _dump(docs: list[dict[str, Any]]) -> str:
    return "".join("---\n" + yaml.safe_dump(d, sort_keys=False) for d in docs)


def _credentials(bundle: Path) -> dict[str, dict[str, bytes]]:
    out: dict[str, dict[str, bytes]] = {}
    certs = bundle / "certs"
    for d in sorted(certs.iterdir()) if certs.is_dir() else []:
        if d.is_dir():
            out[d.name] = {f.name: f.read_bytes() for f in sorted(d.iterdir()) if f.is_file()}
    return out


def _secret(name: str, ns: str, files: dict[str, bytes], labels: dict[str, str]) -> dict[str, Any]:
    tls = "tls.crt" in files and "tls.key" in files
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "type": "kubernetes.io/tls" if tls else "Opaque",
            "data": {k: base64.b64encode(v).decode() for k, v in files.items()}}


def kubernetes(bundle_dir: Path, image: str, replicas: int, service_type: str, hpa_max: int | None,
               drain_seconds: int) -> dict[str, str]:
    """File name → YAML text."""
    b = load(bundle_dir)
    w = b.workload
    name, ns, labels = w.get("name", "gateway"), w.get("namespace", "default"), dict(w.get("labels") or {})
    ports = b.manifest.get("ports") or {}
    servers = {int(k): int(v) for k, v in (ports.get("servers") or {}).items()}
    readiness = int(ports.get("readiness", 15021))
    install_dir = str(b.manifest.get("install_dir", "/etc/envoy")).rstrip("/")
    creds = _credentials(bundle_dir)
    meta = {"name": name, "namespace": ns, "labels": labels}
    grace = PRESTOP_SECONDS + drain_seconds + 5
    container: dict[str, Any] = {
        "name": "gateway", "image": image,
        "ports": [{"name": f"port-{p}", "containerPort": p, "protocol": "TCP"} for p in sorted(set(servers.values()))]
        + [{"name": "status-port", "containerPort": readiness, "protocol": "TCP"}],
        "env": [{"name": "ENVOYGEN_DRAIN_SECONDS", "value": str(drain_seconds)}],
        "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": readiness}, "periodSeconds": 2,
                           "failureThreshold": 2},
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 101, "runAsGroup": 101,
                            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]
        + [{"name": f"cred-{i}", "mountPath": f"{install_dir}/certs/{c}", "readOnly": True} for i, c in enumerate(creds)],
    }
    volumes = [{"name": "tmp", "emptyDir": {}}] + [
        {"name": f"cred-{i}", "secret": {"secretName": c, "defaultMode": 0o400}} for i, c in enumerate(creds)]
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "terminationGracePeriodSeconds": grace,
                     "securityContext": {"runAsNonRoot": True, "runAsUser": 101, "runAsGroup": 101, "fsGroup": 101},
                     "containers": [container], "volumes": volumes}}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": meta,
               "spec": {"type": service_type, "selector": labels,
                        "ports": [{"name": f"port-{sp}", "port": sp, "targetPort": lp, "protocol": "TCP"}
                                  for sp, lp in sorted(servers.items())]}}
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta,
           "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}}}
    files = {"deployment.yaml": _dump([deployment]), "service.yaml": _dump([service]), "pdb.yaml": _dump([pdb])}
    if hpa_max is not None:
        if hpa_max < replicas:
            raise InputError(f"--hpa-max {hpa_max} is below --replicas {replicas}")
        files["hpa.yaml"] = _dump([{
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta,
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": replicas, "maxReplicas": hpa_max,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                                                    "target": {"type": "Utilization", "averageUtilization": 80}}}]}}])
    if creds:
        files["secrets.yaml"] = _dump([_secret(c, ns, f, labels) for c, f in creds.items()])
    return files


def compose(bundle_dir: Path, image: str, replicas: int, host_port_base: int, drain_seconds: int) -> tuple[str, list[dict]]:
    """A Compose file: one service per replica, each publishing the gateway's ports on
    127.0.0.1 at host_port_base + (replica - 1) * len(ports) + index. Returns the
    text and the port table (replica, container port, host port)."""
    b = load(bundle_dir)
    ports = b.manifest.get("ports") or {}
    listen = sorted({*map(int, ports.get("listeners") or []), int(ports.get("readiness", 15021))})
    table, services = [], {}
    for r in range(1, replicas + 1):
        mapping = []
        for j, p in enumerate(listen):
            host = host_port_base + (r - 1) * len(listen) + j
            table.append({"replica": r, "port": p, "host_port": host})
            mapping.append(f"127.0.0.1:{host}:{p}")
        services[f"gateway-{r}"] = {
            "image": image, "restart": "unless-stopped", "read_only": True, "user": "101:101",
            "tmpfs": ["/tmp"], "environment": {"ENVOYGEN_DRAIN_SECONDS": str(drain_seconds)},
            "stop_grace_period": f"{drain_seconds + 5}s", "ports": mapping,
        }
    return yaml.safe_dump({"version": "2.4", "services": services}, sort_keys=False), table


def write(out: Path, files: dict[str, str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        p = out / name
        p.write_text(text)
        if name == "secrets.yaml":  # private keys
            os.chmod(p, 0o600)
