"""``envoygen graph``: what routes where in a bundle, as a self-contained HTML page,
Mermaid or DOT: listener → filter chain (SNI, TLS mode) → route configuration →
virtual host → route (match, policies) → cluster (type, LB, upstream TLS,
policies) → endpoints. Read from the bundle's files; no external resources.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any

from .proxyconfig.bundle import HCM, TCP_PROXY, Bundle
from .proxyconfig.views import describe_match, endpoint_list


@dataclass
class Node:
    id: str
    kind: str  # listener, chain, routeconfig, vhost, route, cluster, endpoint
    label: str
    notes: list[str] = field(default_factory=list)


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    # an ordered set: the edges in the order first linked (a dict, so that linking is O(1);
    # a list's membership scan made graph quadratic in the number of routes)
    edges: dict[tuple[str, str], None] = field(default_factory=dict)

    def add(self, kind: str, key: str, label: str, notes: list[str] | None = None) -> str:
        nid = f"{kind}:{key}"
        if nid not in self.nodes:
            self.nodes[nid] = Node(nid, kind, label, notes or [])
        return nid

    def link(self, a: str, b: str) -> None:
        self.edges.setdefault((a, b))


def _tls_mode(fc: dict[str, Any]) -> str:
    ts = fc.get("transport_socket")
    if not ts:
        has_tcp = any(f.get("name") == TCP_PROXY for f in fc.get("filters") or [])
        sni = (fc.get("filter_chain_match") or {}).get("server_names")
        return "TLS PASSTHROUGH" if has_tcp and sni else "plaintext"
    ctx = ts.get("typed_config") or {}
    return "TLS MUTUAL" if ctx.get("require_client_certificate") else "TLS SIMPLE"


def _route_notes(r: dict[str, Any], vh_retry: dict[str, Any] | None = None,
                 vh_metadata: dict[str, Any] | None = None) -> list[str]:
    notes = []
    ra = r.get("route") or {}
    if "route" in r and "retry_policy" not in ra and vh_retry:
        ra = {**ra, "retry_policy": vh_retry}  # the virtual host's, stated once for all its routes
    if "redirect" in r:
        notes.append("redirect " + json.dumps(r["redirect"], sort_keys=True))
    if "direct_response" in r:
        notes.append(f"direct response {r['direct_response'].get('status')}")
    if ra.get("timeout"):
        notes.append(f"timeout {ra['timeout']}")
    if (ra.get("retry_policy") or {}).get("num_retries") is not None:
        notes.append(f"retries {ra['retry_policy']['num_retries']}")
    if ra.get("request_mirror_policies"):
        notes.append("mirror")
    for name in (r.get("typed_per_filter_config") or {}):
        notes.append(name.rsplit(".", 1)[-1])  # fault, cors, ...
    metadata = r.get("metadata") or vh_metadata  # a virtual host states it once for routes of one VirtualService
    cfg = (((metadata or {}).get("filter_metadata") or {}).get("istio") or {}).get("config", "")
    if cfg:
        notes.append("VirtualService " + cfg.rsplit("/", 1)[-1])
    return notes


def _cluster_notes(c: dict[str, Any]) -> list[str]:
    notes = [c.get("type", "STATIC"), c.get("lb_policy", "ROUND_ROBIN")]
    ts = c.get("transport_socket")
    if ts:
        ctx = (ts.get("typed_config") or {}).get("common_tls_context") or {}
        notes.append("upstream TLS MUTUAL" if ctx.get("tls_certificates") or ctx.get("tls_certificate_sds_secret_configs")
                     else "upstream TLS SIMPLE")
    if c.get("outlier_detection"):
        notes.append("outlier detection")
    th = ((c.get("circuit_breakers") or {}).get("thresholds") or [{}])[0]
    if th.get("max_connections", 4294967295) != 4294967295:
        notes.append(f"max connections {th['max_connections']}")
    return notes


def _cluster_targets(action: dict[str, Any]) -> list[str]:
    if action.get("cluster"):
        return [action["cluster"]]
    return [c["name"] for c in (action.get("weighted_clusters") or {}).get("clusters", [])]


def build(b: Bundle) -> Graph:
    g = Graph()
    for c in b.clusters:
        g.add("cluster", c["name"], c["name"], _cluster_notes(c))
    for l in b.listeners:
        sa = (l.get("address") or {}).get("socket_address") or {}
        lid = g.add("listener", l["name"], f"{l['name']} ({sa.get('address')}:{sa.get('port_value')})")
        for i, fc in enumerate(l.get("filter_chains") or []):
            sni = ",".join((fc.get("filter_chain_match") or {}).get("server_names") or []) or "any SNI"
            cid = g.add("chain", f"{l['name']}/{fc.get('name') or i}", f"chain {fc.get('name') or i}: {sni}",
                        [_tls_mode(fc)])
            g.link(lid, cid)
            for f in fc.get("filters") or []:
                tc = f.get("typed_config") or {}
                if f.get("name") == TCP_PROXY:
                    for cl in _cluster_targets(tc):
                        g.link(cid, g.add("cluster", cl, cl))
                elif f.get("name") == HCM and isinstance(tc.get("route_config"), dict):
                    _route_config(g, cid, l["name"], tc["route_config"])
    for e in endpoint_list(b):
        eid = g.add("endpoint", f"{e['cluster']}/{e['address']}:{e['port']}", f"{e['address']}:{e['port']}",
                    [e["status"]])
        g.link(f"cluster:{e['cluster']}", eid)
    return g


def _route_config(g: Graph, parent: str, listener: str, rc: dict[str, Any]) -> None:
    rcname = rc.get("name") or f"{listener} (inline)"
    rid = g.add("routeconfig", rcname, f"route config {rcname}")
    g.link(parent, rid)
    for vh in rc.get("virtual_hosts") or []:
        notes = ["require TLS: " + vh["require_tls"]] if vh.get("require_tls") else []
        vid = g.add("vhost", f"{rcname}/{vh['name']}", f"vhost {vh['name']} [{', '.join(vh.get('domains') or [])}]", notes)
        g.link(rid, vid)
        for i, r in enumerate(vh.get("routes") or []):
            match = describe_match(r.get("match") or {}) or "(match)"
            if (r.get("match") or {}).get("headers"):
                match += " + headers"
            notes = _route_notes(r, vh.get("retry_policy"), vh.get("metadata"))
            nid = g.add("route", f"{rcname}/{vh['name']}/{i}", f"route {match}", notes)
            g.link(vid, nid)
            for cl in _cluster_targets(r.get("route") or {}):
                g.link(nid, g.add("cluster", cl, cl))


# ---------------------------------------------------------------- output

def _mid(nid: str) -> str:
    """A Mermaid node id: stable, from the node's own id."""
    import hashlib

    return "n" + hashlib.sha256(nid.encode()).hexdigest()[:12]


def to_mermaid(g: Graph) -> str:
    out = ["flowchart LR"]
    for n in g.nodes.values():
        text = "<br/>".join([n.label, *n.notes]).replace('"', "#quot;")
        out.append(f'  {_mid(n.id)}["{text}"]:::{n.kind}')
    out += [f"  {_mid(a)} --> {_mid(b)}" for a, b in g.edges]
    return "\n".join(out) + "\n"


def to_dot(g: Graph) -> str:
    out = ["digraph envoygen {", "  rankdir=LR;", "  node [shape=box, fontname=monospace];"]
    for n in g.nodes.values():
        out.append(f"  {json.dumps(n.id)} [label={json.dumps(chr(10).join([n.label, *n.notes]))}, class={json.dumps(n.kind)}];")
    out += [f"  {json.dumps(a)} -> {json.dumps(b)};" for a, b in g.edges]
    return "\n".join(out) + "\n}\n"


_CSS = """
body{font-family:system-ui,sans-serif;margin:16px;background:#fafafa;color:#222}
h1{font-size:20px} ul.tree{list-style:none;padding-left:22px;border-left:2px solid #ccd}
li>div.node{display:inline-block;margin:3px 0;padding:4px 8px;border-radius:6px;border:1px solid #99a;background:#fff}
.listener>div.node{background:#1f4e79;color:#fff;font-weight:bold}
.chain>div.node{background:#dbe9f7}.routeconfig>div.node{background:#e8e3f3}.vhost>div.node{background:#f3ecd9}
.route>div.node{background:#e3f1e3}.cluster>div.node{background:#f7dede}.endpoint>div.node{background:#eee}
span.note{display:inline-block;margin-left:6px;padding:0 5px;border-radius:4px;background:#333;color:#fff;font-size:11px}
span.tls{background:#2e7d32}
"""


def _li(g: Graph, nid: str, children: dict[str, list[str]], seen: set[str]) -> str:
    n = g.nodes[nid]
    notes = "".join(f'<span class="note{" tls" if "TLS" in t else ""}">{html.escape(t)}</span>' for t in n.notes)
    attrs = f'class="{n.kind}" data-kind="{n.kind}"'
    if n.kind == "listener":
        attrs += f' id="listener-{html.escape(n.id.split(":", 1)[1])}"'
    inner = ""
    if nid not in seen:
        seen = seen | {nid}
        kids = [_li(g, c, children, seen) for c in children.get(nid, [])]
        inner = f'<ul class="tree">{"".join(kids)}</ul>' if kids else ""
    return f'<li {attrs}><div class="node">{html.escape(n.label)}{notes}</div>{inner}</li>'


def to_html(g: Graph, title: str) -> str:
    children: dict[str, list[str]] = {}
    for a, b in g.edges:
        children.setdefault(a, []).append(b)
    listeners = [n.id for n in g.nodes.values() if n.kind == "listener"]
    body = "".join(_li(g, lid, children, set()) for lid in listeners)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>listener → filter chain → route configuration → virtual host → "
            f"route → cluster → endpoints ({len(listeners)} listeners)</p>"
            f'<ul class="tree" id="graph">{body}</ul></body></html>\n')
