"""istioctl ``proxy-config``-style views of a rendered bundle (read from its files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from . import names
from .errors import InputError

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _match_text(m: dict[str, Any]) -> str:
    """istioctl's way of showing a route match: ``/prefix*``, ``/exact/path`` or the regex."""
    if "prefix" in m:
        return f"{m['prefix']}*"
    return m.get("path") or (m.get("safe_regex") or {}).get("regex", "")


def _bootstrap(bundle: Path) -> dict[str, Any]:
    try:
        man = json.loads((bundle / "manifest.json").read_text())
        name = man.get("bootstrap", "envoy.yaml")
        if "bundles" in man:
            raise InputError(f"{bundle} holds several bundles ({', '.join(man['bundles'])}); name one of them")
        return yaml.load((bundle / name).read_text(), Loader=_LOADER)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise InputError(f"{bundle}: not an envoygen bundle ({exc})") from None


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines) + "\n"


def _hcms(listener: dict[str, Any]):
    for fc in listener.get("filter_chains", []):
        for f in fc.get("filters", []):
            if f.get("name") == "envoy.filters.network.http_connection_manager":
                yield fc, f["typed_config"]


def _destination(fc: dict[str, Any]) -> str:
    for f in fc.get("filters", []):
        tc = f.get("typed_config", {})
        if f["name"].endswith("http_connection_manager"):
            rc = tc.get("route_config", {})
            if rc.get("name"):
                return f"Route: {rc['name']}"
            # istioctl shows unnamed inline route configs by their first match, e.g. the 15021 listener
            routes = [r for vh in rc.get("virtual_hosts", []) for r in vh.get("routes", [])]
            return f"Inline Route: {_match_text(routes[0]['match']) if routes else '*'}"
        if f["name"].endswith("tcp_proxy"):
            if "cluster" in tc:
                return f"Cluster: {tc['cluster']}"
            return "Clusters: " + ",".join(c["name"] for c in tc.get("weighted_clusters", {}).get("clusters", []))
    return ""


def listeners(b: dict[str, Any]) -> tuple[list[str], list[list[str]], Any]:
    rows = []
    data = b["static_resources"]["listeners"]
    for l in data:
        addr = l["address"]["socket_address"]
        for fc in l.get("filter_chains", []):
            sni = ",".join(fc.get("filter_chain_match", {}).get("server_names", [])) or "ALL"
            rows.append([addr["address"], str(addr["port_value"]), f"SNI: {sni}" if sni != "ALL" else "ALL", _destination(fc)])
    return ["ADDRESSES", "PORT", "MATCH", "DESTINATION"], rows, data


def routes(b: dict[str, Any]) -> tuple[list[str], list[list[str]], Any]:
    rows, data = [], []
    for l in b["static_resources"]["listeners"]:
        for _fc, hcm in _hcms(l):
            rc = hcm.get("route_config", {})
            if "name" not in rc:
                continue
            data.append(rc)
            for vh in rc.get("virtual_hosts", []):
                for r in vh.get("routes", []) or [None]:
                    if r is None:
                        rows.append([rc["name"], vh["name"], ",".join(vh["domains"]), "*", "404"])
                        continue
                    m = r["match"]
                    match = _match_text(m)
                    if "redirect" in r:
                        dest = "redirect"
                    elif "direct_response" in r:
                        dest = f"direct {r['direct_response']['status']}"
                    else:
                        ra = r["route"]
                        dest = ra.get("cluster") or ",".join(c["name"] for c in ra.get("weighted_clusters", {}).get("clusters", []))
                    rows.append([rc["name"], vh["name"], ",".join(vh["domains"]), match, dest])
                if vh.get("require_tls") == "ALL":
                    rows.append([rc["name"], vh["name"], ",".join(vh["domains"]), "*", "301 https redirect"])
    return ["NAME", "VHOST NAME", "DOMAINS", "MATCH", "DESTINATION"], rows, data


def _split(name: str) -> list[str]:
    parsed = names.parse_cluster(name)
    if parsed is None:
        return [name, "-", "-", "-"]
    direction, port, subset, host = parsed
    return [host, port, subset or "-", direction]


def clusters(b: dict[str, Any]) -> tuple[list[str], list[list[str]], Any]:
    data = b["static_resources"]["clusters"]
    rows = [[*_split(c["name"]), c.get("type", "STATIC")] for c in data]
    return ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE"], rows, data


def endpoints(b: dict[str, Any]) -> tuple[list[str], list[list[str]], Any]:
    rows, data = [], []
    for c in b["static_resources"]["clusters"]:
        for group in c.get("load_assignment", {}).get("endpoints", []):
            for ep in group.get("lb_endpoints", []):
                sa = ep["endpoint"]["address"]["socket_address"]
                rows.append([f"{sa['address']}:{sa['port_value']}", "HEALTHY", c["name"]])
                data.append({"cluster": c["name"], "address": sa["address"], "port": sa["port_value"]})
    return ["ENDPOINT", "STATUS", "CLUSTER"], rows, data


def secrets(bundle: Path) -> tuple[list[str], list[list[str]], Any]:
    from .credentials import describe_certificate

    rows, data = [], []
    for sds in sorted((bundle / "sds").glob("*.yaml")) if (bundle / "sds").is_dir() else []:
        doc = yaml.load(sds.read_text(), Loader=_LOADER)
        for res in doc.get("resources", []):
            credential, _ = names.credential_of_sds_file(sds.stem)
            if "tls_certificate" in res:
                kind, rel = "Cert Chain", f"{names.cert_dir(sds.stem)}/tls.crt"
            else:
                kind, rel = "CA", f"{names.cert_dir(credential)}/ca.crt"
            path = bundle / rel
            info: dict[str, Any] = {}
            try:
                info = describe_certificate(path.read_bytes())
            except Exception as exc:  # noqa: BLE001 - shown to the user
                info = {"error": str(exc)}
            data.append({"name": res["name"], "type": kind, "file": rel, **info})
            rows.append([res["name"], kind, str(info.get("valid", "?")).lower(), str(info.get("serial", "")),
                         str(info.get("not_after", "")), str(info.get("not_before", ""))])
    return ["RESOURCE NAME", "TYPE", "VALID CERT", "SERIAL NUMBER", "NOT AFTER", "NOT BEFORE"], rows, data


def show(what: str, bundle: Path, fmt: str) -> str:
    if what == "secrets":
        _bootstrap(bundle)
        headers, rows, data = secrets(bundle)
    else:
        b = _bootstrap(bundle)
        headers, rows, data = {"listeners": listeners, "routes": routes, "clusters": clusters, "endpoints": endpoints}[what](b)
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=True)
    return _table(headers, rows)
