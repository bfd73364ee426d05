"""The istioctl ``proxy-config`` summaries of a bundle: columns, cells and sort
orders as istioctl's writers print them (istio/istio
istioctl/pkg/writer/envoy/configdump/{listener,route,cluster}.go,
istioctl/pkg/writer/envoy/clusters/clusters.go for endpoints,
istioctl/pkg/writer/compare/sds/{util,writer}.go for secrets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import names
from .bundle import HCM, TCP_PROXY, Bundle, route_configs


@dataclass(frozen=True)
class Filters:
    name: str = ""
    port: int = 0
    fqdn: str = ""
    subset: str = ""
    direction: str = ""
    address: str = ""
    cluster: str = ""
    status: str = ""
    type: str = ""  # listeners: HTTP, TCP, HTTP+TCP
    verbose: bool = True
    with_filters: bool = False  # listeners: a FILTERS column (not istioctl's; see chain_filters)


Table = tuple[list[str], list[list[str]], list[Any]]


def describe_match(m: dict[str, Any]) -> str:
    conds = []
    if m.get("prefix"):
        conds.append(f"{m['prefix']}*")
    if m.get("path_separated_prefix"):
        conds.append(f"PathPrefix:{m['path_separated_prefix']}")
    if m.get("path"):
        conds.append(m["path"])
    if m.get("safe_regex"):
        conds.append(f"regex {m['safe_regex'].get('regex', '')}")
    return " ".join(conds)  # headers are not shown, as istioctl


def config_name(metadata: dict[str, Any] | None) -> str:
    """istioctl's describeManagement: ``name.namespace`` of the Istio config behind a route or cluster."""
    path = (((metadata or {}).get("filter_metadata") or {}).get("istio") or {}).get("config")
    if not path:
        return ""
    if path.startswith("/apis/networking.istio.io/"):
        pieces = path.split("/")
        return f"{pieces[7]}.{pieces[5]}" if len(pieces) == 8 else ""
    return "<unknown>"


# ---------------------------------------------------------------- listeners

def _socket(l: dict[str, Any]) -> tuple[str, int]:
    sa = (l.get("address") or {}).get("socket_address") or {}
    return str(sa.get("address", "")), int(sa.get("port_value", 0))


def _chain_match(fcm: dict[str, Any] | None) -> str:
    fcm = fcm or {}
    descrs = []
    if fcm.get("server_names"):
        descrs.append("SNI: " + ",".join(fcm["server_names"]))
    if fcm.get("transport_protocol"):
        descrs.append(f"Trans: {fcm['transport_protocol']}")
    if fcm.get("application_protocols"):
        descrs.append("App: " + ",".join(fcm["application_protocols"]))
    if fcm.get("destination_port"):
        descrs.append(f"Addr: *:{fcm['destination_port']}")
    return "; ".join(descrs) or "ALL"


def _inline_route(rc: dict[str, Any]) -> str:
    vhs = rc.get("virtual_hosts") or []
    if len(vhs) == 1 and vhs[0].get("domains") == ["*"] and len(vhs[0].get("routes") or []) == 1:
        r = vhs[0]["routes"][0]
        if r.get("match", {}).get("prefix") == "/" and "cluster" in (r.get("route") or {}):
            return f"Cluster: {r['route']['cluster']}"
    parts = []
    for vh in vhs:
        routes = ", ".join(describe_match(r.get("match") or {}) for r in vh.get("routes") or [])
        domains = "" if vh.get("domains") == ["*"] else "/".join(vh.get("domains") or [])
        parts.append(f"{domains} {routes}" if domains else routes)
    return "Inline Route: " + "; ".join(parts)


def _destination(fc: dict[str, Any]) -> str:
    for f in fc.get("filters") or []:
        tc = f.get("typed_config") or {}
        if f.get("name") == HCM:
            rc = tc.get("route_config")
            if isinstance(rc, dict):
                # envoygen's route configurations are inline; the named ones are Istio's RDS names
                return f"Route: {rc['name']}" if rc.get("name") else _inline_route(rc)
            return "HTTP"
        if f.get("name") == TCP_PROXY:
            if "cluster" in tc:
                return f"Cluster: {tc['cluster']}"
            return "Clusters: " + ",".join(c["name"] for c in (tc.get("weighted_clusters") or {}).get("clusters", []))
    return "Non-HTTP/Non-TCP"


def _short(name: str) -> str:
    for prefix in ("envoy.filters.network.", "envoy.filters.http."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def chain_filters(fc: dict[str, Any]) -> str:
    """A chain's network filters in order, an HCM's HTTP filters in brackets: ``rbac,tcp_proxy``,
    ``http_connection_manager[jwt_authn,rbac,fault,cors,router]`` (envoy.filters.* prefixes dropped)."""
    out = []
    for f in fc.get("filters") or []:
        name = _short(str(f.get("name", "")))
        if f.get("name") == HCM:
            http = (f.get("typed_config") or {}).get("http_filters") or []
            name += "[" + ",".join(_short(str(h.get("name", ""))) for h in http) + "]"
        out.append(name)
    return ",".join(out)


def listener_type(l: dict[str, Any]) -> str:
    """istioctl's retrieveListenerType: HTTP, TCP, HTTP+TCP or UNKNOWN."""
    kinds = [f.get("name") for fc in l.get("filter_chains") or [] for f in fc.get("filters") or []]
    http, tcp = HCM in kinds, TCP_PROXY in kinds
    return "HTTP+TCP" if http and tcp else "HTTP" if http else "TCP" if tcp else "UNKNOWN"


def listeners(b: Bundle, flt: Filters) -> Table:
    chosen = []
    for l in b.listeners:
        addr, port = _socket(l)
        if flt.address and addr.lower() != flt.address.lower() or flt.port and port != flt.port:
            continue
        if flt.type and listener_type(l).lower() != flt.type.lower():
            continue
        chosen.append(l)
    chosen.sort(key=lambda l: (_socket(l)[1], _socket(l)[0], listener_type(l)))
    if not flt.verbose:  # istioctl --verbose=false
        return (["ADDRESSES", "PORT", "TYPE"], [[_socket(l)[0], str(_socket(l)[1]), listener_type(l)] for l in chosen],
                chosen)
    rows = []
    for l in chosen:
        addr, port = _socket(l)
        chains = [(_chain_match(fc.get("filter_chain_match")), _destination(fc), chain_filters(fc))
                  for fc in l.get("filter_chains") or []]
        chains.sort(key=lambda c: c[1], reverse=True)  # istioctl: by destination, descending
        rows += [[addr, str(port), m, d, *([f] if flt.with_filters else [])] for m, d, f in chains]
    return ["ADDRESSES", "PORT", "MATCH", "DESTINATION", *(["FILTERS"] if flt.with_filters else [])], rows, chosen


# ---------------------------------------------------------------- routes

def describe_domains(domains: list[str]) -> str:
    if len(domains) <= 1:
        return "".join(domains)
    without_port = [d for d in domains if ":" not in d or d.count(":") > 2 and d.endswith("]")]
    if len(without_port) > 2:
        return f"{', '.join(without_port[:2])} + {len(without_port) - 2} more..."
    return ", ".join(without_port)


def routes(b: Bundle, flt: Filters) -> Table:
    rows, data = [], []
    for rc in route_configs(b):
        name = rc.get("name", "")
        if flt.name and flt.name != name:
            continue
        data.append(rc)
        if not flt.verbose:  # istioctl --verbose=false: NAME, VIRTUAL HOSTS
            rows.append([name, str(len(rc.get("virtual_hosts") or []))])
            continue
        for vh in rc.get("virtual_hosts") or []:
            domains = describe_domains(vh.get("domains") or [])
            for r in vh.get("routes") or []:
                rows.append([name, vh.get("name", ""), domains, describe_match(r.get("match") or {}),
                             config_name(r.get("metadata") or vh.get("metadata"))])
            if not vh.get("routes"):
                rows.append([name, vh.get("name", ""), domains, "/*", "404"])
    headers = ["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"] if flt.verbose else ["NAME", "VIRTUAL HOSTS"]
    return headers, rows, data


# ---------------------------------------------------------------- clusters

def _cluster_key(name: str) -> tuple[str, str, int, str]:
    parsed = names.parse_cluster(name)
    if parsed is None:
        return (name, "", 0, "")
    direction, port, subset, host = parsed
    return (host, subset, int(port) if str(port).isdigit() else 0, direction)


def cluster_selected(name: str, flt: Filters) -> bool:
    """istioctl's ClusterFilter.Verify: substrings of the cluster name."""
    if flt.fqdn and flt.fqdn not in name or flt.direction and flt.direction not in name:
        return False
    if flt.subset and flt.subset not in name:
        return False
    return not (flt.port and f"|{flt.port}|" not in name)


def clusters(b: Bundle, flt: Filters) -> Table:
    data = sorted((c for c in b.clusters if cluster_selected(c["name"], flt)), key=lambda c: _cluster_key(c["name"]))
    rows = []
    for c in data:
        parsed = names.parse_cluster(c["name"])
        dr = config_name(c.get("metadata"))
        if parsed is None:
            rows.append([c["name"], "-", "-", "-", c.get("type", "STATIC"), dr])
        else:
            direction, port, subset, host = parsed
            rows.append([host, str(port), subset or "-", direction, c.get("type", "STATIC"), dr])
    return ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"], rows, data


# ---------------------------------------------------------------- endpoints

def endpoint_list(b: Bundle) -> list[dict[str, Any]]:
    out = []
    for c in b.clusters:
        for group in (c.get("load_assignment") or {}).get("endpoints") or []:
            for ep in group.get("lb_endpoints") or []:
                sa = ep["endpoint"]["address"]["socket_address"]
                # what Envoy reports as eds_health_status for a static endpoint: its configured
                # health_status (HEALTHY unless set); nothing has failed an outlier check in a bundle
                out.append({"cluster": c["name"], "address": sa["address"], "port": int(sa["port_value"]),
                            "status": ep.get("health_status", "HEALTHY"), "failedOutlierCheck": False,
                            "weight": ep.get("load_balancing_weight", 1)})
    return out


def endpoints(b: Bundle, flt: Filters) -> Table:
    data = [e for e in endpoint_list(b)
            if not (flt.address and e["address"].lower() != flt.address.lower() or flt.port and e["port"] != flt.port
                    or flt.cluster and e["cluster"].lower() != flt.cluster.lower()
                    or flt.status and e["status"].lower() != flt.status.lower())]
    data.sort(key=lambda e: (e["address"], e["port"], e["cluster"]))
    rows = [[f"{e['address']}:{e['port']}", e["status"], "FAILED" if e["failedOutlierCheck"] else "OK", e["cluster"]]
            for e in data]
    return ["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"], rows, data
