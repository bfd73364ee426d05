"""Istio documents as Python data, and readers of the rendered bootstrap, for the HTTP suites."""

from __future__ import annotations

from typing import Any

import yaml

NS = "test"


def gateway_doc(name: str = "gw", ns: str = NS, hosts: list[str] | None = None, port: int = 80) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [{"port": {"number": port, "name": "http", "protocol": "HTTP"}, "hosts": hosts or ["*"]}],
        },
    }


def vs_doc(name: str, hosts: list[str], http: list[dict], gateways: list[str] | None = None, ns: str = NS) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"hosts": hosts, "gateways": gateways or ["gw"], "http": http},
    }


def se_doc(name: str, port: int, ns: str = NS) -> dict[str, Any]:
    """A STATIC ServiceEntry ``<name>.<ns>.svc.cluster.local:80`` → 127.0.0.1:``port``."""
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "hosts": [f"{name}.{ns}.svc.cluster.local"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP", "targetPort": port}],
            "resolution": "STATIC",
            "endpoints": [{"address": "127.0.0.1"}],
        },
    }


def to(name: str, **dest: Any) -> list[dict]:
    return [{"destination": {"host": name, **dest}}]


def dump(*docs: dict) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def start(gateway_factory, backend_factory, names, docs, **backend_kw):  # noqa: ANN001, ANN201
    """Start backends ``names`` (each behind a ServiceEntry of its name) and a gateway on ``docs``."""
    backends = {n: backend_factory(n, **backend_kw.get(n, {})) for n in names}
    all_docs = [*docs, *(se_doc(n, b.port) for n, b in backends.items())]
    gw = gateway_factory(dump(*all_docs), ports=(80,))
    return gw, backends


def bootstrap(gw) -> dict:  # noqa: ANN001
    return yaml.safe_load(gw.bootstrap_path.read_text())


def route_configs(gw) -> dict[str, dict]:  # noqa: ANN001
    out: dict[str, dict] = {}
    for listener in bootstrap(gw)["static_resources"]["listeners"]:
        for chain in listener.get("filter_chains", []):
            for f in chain.get("filters", []):
                rc = f.get("typed_config", {}).get("route_config")
                if rc and rc.get("name"):
                    out[rc["name"]] = rc
    return out


def vhost_routes(gw, vhost: str) -> list[dict]:  # noqa: ANN001
    for rc in route_configs(gw).values():
        for vh in rc.get("virtual_hosts", []):
            if vh["name"] == vhost:
                return vh.get("routes", [])
    raise AssertionError(f"no vhost {vhost}")
