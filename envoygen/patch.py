"""EnvoyFilter patches applied to the final bootstrap (plain data), as Istio's
pilot/pkg/networking/core/envoyfilter applies them to xDS resources.

The patches come from the IR (``ir.ConfigPatch``, in priority order); they see the
names envoygen's templates wrote, and Envoy's own validation judges the result.
The listeners and clusters of the bootstrap itself (stats, readiness, admin) are
not patchable, as in Istio, where they are not xDS resources either.
MERGE follows protobuf merge rules on the JSON form: messages merge field by field,
repeated fields append, scalars replace; a ``typed_config`` of another ``@type`` replaces.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Iterator

from . import ir

HCM = "envoy.filters.network.http_connection_manager"


def merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        cur = dst.get(k)
        if isinstance(cur, dict) and isinstance(v, dict):
            if k == "typed_config" and "@type" in v and v.get("@type") != cur.get("@type"):
                dst[k] = copy.deepcopy(v)
            else:
                merge(cur, v)
        elif isinstance(cur, list) and isinstance(v, list):
            cur.extend(copy.deepcopy(v))
        else:
            dst[k] = copy.deepcopy(v)


def _value(p: ir.ConfigPatch) -> Any:
    return json.loads(p.value) if p.value else {}


def _listeners(data: dict[str, Any], internal: set[str]) -> list[dict[str, Any]]:
    return [l for l in data["static_resources"]["listeners"] if l.get("name") not in internal]


def _listener_ok(l: dict[str, Any], p: ir.ConfigPatch) -> bool:
    port = l.get("address", {}).get("socket_address", {}).get("port_value")
    return (not p.listener_port or port == p.listener_port) and (not p.listener_name or l.get("name") == p.listener_name)


def _chain_ok(fc: dict[str, Any], p: ir.ConfigPatch) -> bool:
    if p.chain_name and fc.get("name") != p.chain_name:
        return False
    if p.chain_sni and p.chain_sni not in fc.get("filter_chain_match", {}).get("server_names", []):
        return False
    if p.filter_name and not any(f.get("name") == p.filter_name for f in fc.get("filters", [])):
        return False
    if p.sub_filter_name and not any(h.get("name") == p.sub_filter_name for h in _hcm_filters(fc)):
        return False
    return True


def _hcm_configs(fc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for f in fc.get("filters", []):
        if f.get("name") == HCM:
            yield f["typed_config"]


def _hcm_filters(fc: dict[str, Any]) -> list[dict[str, Any]]:
    return [h for c in _hcm_configs(fc) for h in c.get("http_filters", [])]


def _chains(data: dict[str, Any], internal: set[str], p: ir.ConfigPatch) -> Iterator[dict[str, Any]]:
    for l in _listeners(data, internal):
        if _listener_ok(l, p):
            for fc in l.get("filter_chains", []):
                if _chain_ok(fc, p):
                    yield fc


def _list_op(items: list[dict[str, Any]], p: ir.ConfigPatch, name: str) -> bool:
    """ADD, INSERT_*, REMOVE, MERGE, REPLACE on a list of named elements; ``name`` the one matched."""
    op, value = p.operation, _value(p)
    if op == "ADD":
        items.append(value)
        return True
    if op == "INSERT_FIRST":
        items.insert(0, value)
        return True
    hits = [i for i, it in enumerate(items) if not name or it.get("name") == name]
    if op in ("INSERT_BEFORE", "INSERT_AFTER"):
        if not name:
            items.append(value)  # Istio: without a filter to insert around, the same as ADD
            return True
        if not hits:
            return False
        items.insert(hits[0] + (1 if op == "INSERT_AFTER" else 0), value)
        return True
    for i in reversed(hits):
        if op == "REMOVE":
            del items[i]
        elif op == "MERGE":
            merge(items[i], value)
        elif op == "REPLACE":
            items[i] = copy.deepcopy(value)
    return bool(hits)


def _route_config_ok(rc: dict[str, Any], p: ir.ConfigPatch) -> bool:
    """Istio's gateway routeConfigurationMatch: name, and the port / port name / gateway its RDS name carries."""
    name = rc.get("name", "")
    if p.route_config_name and name != p.route_config_name:
        return False
    parts = name.split(".")
    port = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    port_name = parts[2] if parts[0] == "https" and len(parts) > 4 else ""
    gateway = f"{parts[4]}/{parts[3]}" if parts[0] == "https" and len(parts) > 4 else ""
    return ((not p.route_config_port or port == p.route_config_port)
            and (not p.route_port_name or port_name == p.route_port_name)
            and (not p.route_gateway or gateway == p.route_gateway))


def _route_configs(data: dict[str, Any], internal: set[str], p: ir.ConfigPatch) -> Iterator[dict[str, Any]]:
    for l in _listeners(data, internal):
        for fc in l.get("filter_chains", []):
            for c in _hcm_configs(fc):
                if "route_config" in c and _route_config_ok(c["route_config"], p):
                    yield c["route_config"]


def _apply_routes(data: dict[str, Any], internal: set[str], p: ir.ConfigPatch) -> bool:
    hit = False
    for rc in _route_configs(data, internal, p):
        if p.apply_to == "ROUTE_CONFIGURATION":
            merge(rc, _value(p))
            hit = True
            continue
        vhosts = rc.setdefault("virtual_hosts", [])
        if p.apply_to == "VIRTUAL_HOST":
            hit = _list_op(vhosts, p, p.vhost_name) or hit
            continue
        for vh in vhosts:
            if not p.vhost_name or vh.get("name") == p.vhost_name:
                hit = _list_op(vh.setdefault("routes", []), p, p.route_name) or hit
    return hit


def _cluster_ok(c: dict[str, Any], p: ir.ConfigPatch) -> bool:
    name = c.get("name", "")
    parts = name.split("|")
    if p.cluster_name and name != p.cluster_name:
        return False
    if (p.cluster_service or p.cluster_port or p.cluster_subset) and len(parts) != 4:
        return False
    return ((not p.cluster_service or parts[3] == p.cluster_service)
            and (not p.cluster_port or parts[1] == str(p.cluster_port))
            and (not p.cluster_subset or parts[2] == p.cluster_subset))


def apply_one(data: dict[str, Any], p: ir.ConfigPatch, internal: set[str]) -> bool:
    """Apply ``p``; False when its match found nothing to patch."""
    res = data["static_resources"]
    if p.apply_to in ("LISTENER", "CLUSTER"):
        key = "listeners" if p.apply_to == "LISTENER" else "clusters"
        if p.operation == "ADD":
            res.setdefault(key, []).append(_value(p))
            return True
        ok = _listener_ok if key == "listeners" else _cluster_ok
        items = res.get(key, [])
        hits = [i for i, it in enumerate(items) if it.get("name") not in internal and ok(it, p)]
        for i in reversed(hits):
            if p.operation == "REMOVE":
                del items[i]
            else:
                merge(items[i], _value(p))
        return bool(hits)
    if p.apply_to == "FILTER_CHAIN":
        hit = False
        for l in _listeners(data, internal):
            if _listener_ok(l, p):
                chains = l.setdefault("filter_chains", [])
                if p.operation == "ADD":
                    chains.append(_value(p))
                    hit = True
                    continue
                for i in reversed([i for i, fc in enumerate(chains) if _chain_ok(fc, p)]):
                    hit = True
                    if p.operation == "REMOVE":
                        del chains[i]
                    else:
                        merge(chains[i], _value(p))
        return hit
    if p.apply_to == "NETWORK_FILTER":
        return any([_list_op(fc.setdefault("filters", []), p, p.filter_name) for fc in list(_chains(data, internal, p))])
    if p.apply_to == "HTTP_FILTER":
        return any([_list_op(c.setdefault("http_filters", []), p, p.sub_filter_name)
                    for fc in list(_chains(data, internal, p)) for c in _hcm_configs(fc)])
    return _apply_routes(data, internal, p)


def _resolve_extension_configs(data: dict[str, Any], configs: list[ir.ConfigPatch], internal: set[str]) -> set[str]:
    """EXTENSION_CONFIG ADD, statically: a filter that names one through ``config_discovery`` (as Istio's
    ECDS would serve it) gets its ``typed_config`` inline. Returns the names some filter used."""
    by_name = {}
    for p in configs:
        v = _value(p)
        by_name[v.get("name", "")] = v
    used: set[str] = set()
    for l in _listeners(data, internal):
        for fc in l.get("filter_chains", []):
            lists = [fc.get("filters", [])] + [c.get("http_filters", []) for c in _hcm_configs(fc)]
            for items in lists:
                for f in items:
                    v = by_name.get(f.get("name", "")) if "config_discovery" in f else None
                    if v is not None:
                        del f["config_discovery"]
                        f["typed_config"] = copy.deepcopy(v.get("typed_config", {}))
                        used.add(f["name"])
    return used


def apply_patches(data: dict[str, Any], patches: tuple[ir.ConfigPatch, ...], internal: set[str]) -> list[ir.ConfigPatch]:
    """Apply every patch in order (extension configs last, once the filters naming them are in place);
    return those whose match found nothing."""
    unmatched = []
    for p in patches:
        if p.apply_to == "EXTENSION_CONFIG":
            continue
        try:
            if not apply_one(data, p, internal):
                unmatched.append(p)
        except (AttributeError, TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"{p.origin}: {p.label}: the patch cannot be applied to the configuration: {exc!r}") from None
    configs = [p for p in patches if p.apply_to == "EXTENSION_CONFIG"]
    used = _resolve_extension_configs(data, configs, internal)
    unmatched += [p for p in configs if _value(p).get("name", "") not in used]
    return unmatched
