"""Reading a rendered bundle for the proxy-config views (its files only: no pipeline)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from ..errors import InputError
from ..yamljson import read_bootstrap

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the small SDS files
HCM = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict[str, Any]
    bootstrap: dict[str, Any]

    @property
    def listeners(self) -> list[dict[str, Any]]:
        return list((self.bootstrap.get("static_resources") or {}).get("listeners") or [])

    @property
    def clusters(self) -> list[dict[str, Any]]:
        return list((self.bootstrap.get("static_resources") or {}).get("clusters") or [])

    @property
    def workload(self) -> dict[str, Any]:
        return self.manifest.get("workload") or {}


def load(path: Path) -> Bundle:
    try:
        man = json.loads((path / "manifest.json").read_text())
        if "bundles" in man:
            raise InputError(f"{path} holds several bundles ({', '.join(man['bundles'])}); name one of them")
        name = man.get("bootstrap", "envoy.yaml")
        boot = read_bootstrap((path / name).read_text(), json_text=name.endswith(".json"))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: not an envoygen bundle ({exc})") from None
    if not isinstance(boot, dict):
        raise InputError(f"{path}: not an envoygen bundle (the bootstrap is not a mapping)")
    return Bundle(path, man, boot)


def http_managers(listener: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(filter chain, HttpConnectionManager config) of a listener."""
    for fc in listener.get("filter_chains") or []:
        for f in fc.get("filters") or []:
            if f.get("name") == HCM:
                yield fc, f.get("typed_config") or {}


def route_configs(b: Bundle) -> list[dict[str, Any]]:
    """Every route configuration: the named ones (Istio's RDS ones) first, then the
    inline ones of the readiness and stats listeners, as a config dump lists them."""
    named, inline = [], []
    for l in b.listeners:
        for _fc, hcm in http_managers(l):
            rc = hcm.get("route_config")
            if isinstance(rc, dict):
                (named if rc.get("name") else inline).append(rc)
    return named + inline
