"""istioctl ``proxy-config`` views of a rendered bundle (read from its files).

Command names, columns, sort orders, filters and output modes follow istioctl
(istio/istio istioctl/pkg/proxyconfig/proxyconfig.go and the writers named in
views.py); ``-o json``/``yaml`` print Envoy's protobuf JSON (lowerCamelCase),
as istioctl does.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from .bundle import Bundle, load
from .protojson import to_protojson
from .views import Filters, clusters, endpoints, listeners, routes

__all__ = ["KINDS", "Bundle", "Filters", "load", "show", "table"]

# istioctl's commands and their aliases (cobra Use + Aliases)
KINDS = {
    "listener": "listener", "listeners": "listener", "l": "listener",
    "route": "route", "routes": "route", "r": "route",
    "cluster": "cluster", "clusters": "cluster", "c": "cluster",
    "endpoint": "endpoint", "endpoints": "endpoint", "ep": "endpoint",
    "secret": "secret", "secrets": "secret", "s": "secret",
    "all": "all", "a": "all",
    "bootstrap": "bootstrap", "b": "bootstrap",
}


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Go's tabwriter as istioctl sets it up (padding 5, spaces); trailing blanks dropped."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    out = []
    for cells in [headers, *rows]:
        line = "".join(c.ljust(w + 5) for c, w in zip(cells[:-1], widths)) + cells[-1]
        out.append(line.rstrip())
    return "\n".join(out) + "\n"


def _view(kind: str, b: Bundle, flt: Filters) -> tuple[list[str], list[list[str]], list[Any]]:
    if kind == "secret":
        from .secrets import secrets

        return secrets(b)
    return {"listener": listeners, "route": routes, "cluster": clusters, "endpoint": endpoints}[kind](b, flt)


def _dump(data: Any, fmt: str) -> str:
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return json.dumps(data, indent=4, ensure_ascii=False) + "\n"


def _bootstrap_summary(b: Bundle) -> str:
    meta = ((b.bootstrap.get("node") or {}).get("metadata") or {})
    rows = [["Istio Version:", str(meta.get("ISTIO_VERSION", ""))],
            ["Envoy Version:", str(b.manifest.get("envoy_version", ""))]]
    return "".join(f"{k.ljust(15)}{v}\n" for k, v in rows if v)


def show(kind: str, b: Bundle, fmt: str, flt: Filters) -> str:
    kind = KINDS[kind]
    if kind == "bootstrap":
        if fmt == "short":
            return _bootstrap_summary(b)
        return _dump(to_protojson({"bootstrap": b.bootstrap}), fmt)
    if kind == "all":
        if fmt != "short":
            return _dump(to_protojson({"bootstrap": b.bootstrap}), fmt)
        parts = [_bootstrap_summary(b)]
        for k in ("cluster", "listener", "route", "secret", "endpoint"):
            headers, rows, _ = _view(k, b, flt)
            parts.append(table(headers, rows))
        return "\n".join(parts)
    headers, rows, data = _view(kind, b, flt)
    if fmt == "short":
        return table(headers, rows)
    if kind in ("secret", "endpoint"):
        return _dump(data, fmt)  # not Envoy messages: envoygen's own summary records
    return _dump(to_protojson(data), fmt)
