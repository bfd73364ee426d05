"""``envoygen diff A B``: what changes between two gateways, for a review.

A and B are bundles (directories with manifest.json) or inputs (YAML files or
directories, rendered first with ``envoygen render``'s defaults and the options
given). Compared: listeners, filter chains, routes, clusters, endpoints and
secrets; certificates by SHA-256 fingerprint and serial, never key bytes.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError
from .proxyconfig import load
from .proxyconfig.bundle import Bundle, route_configs
from .proxyconfig.views import _destination, describe_match, endpoint_list


@dataclass(frozen=True, order=True)
class Change:
    kind: str  # listener, filter chain, route, cluster, endpoint, secret
    op: str  # added, removed, changed
    key: str
    detail: str = ""


def _canon(v: Any) -> str:
    return json.dumps(v, sort_keys=True, ensure_ascii=False)


def _chains(b: Bundle) -> dict[str, Any]:
    out = {}
    for l in b.listeners:
        for i, fc in enumerate(l.get("filter_chains") or []):
            sni = ",".join((fc.get("filter_chain_match") or {}).get("server_names") or []) or "ALL"
            out[f"{l['name']} [{fc.get('name') or sni or i}]"] = (fc, f"SNI {sni} -> {_destination(fc)}")
    return out


def _routes(b: Bundle) -> dict[str, Any]:
    out = {}
    for rc in route_configs(b):
        for vh in rc.get("virtual_hosts") or []:
            for r in vh.get("routes") or []:
                m = r.get("match") or {}
                extra = {k: v for k, v in m.items() if k not in ("prefix", "path", "safe_regex", "path_separated_prefix", "case_sensitive")}
                key = f"{rc.get('name') or '(inline)'} {vh.get('name')} {describe_match(m)}"
                if extra:
                    key += " " + _canon(extra)
                action = r.get("route") or r.get("redirect") or r.get("direct_response") or {}
                what = action.get("cluster") or ",".join(c["name"] for c in (action.get("weighted_clusters") or {})
                                                           .get("clusters", [])) or _canon(action)
                out.setdefault(key, (r, what))
    return out


def _secrets(b: Bundle) -> dict[str, Any]:
    from .proxyconfig.secrets import secret_items

    out = {}
    for s in secret_items(b.path):
        try:
            pem = (b.path / s["file"]).read_bytes()
            fp = "sha256:" + hashlib.sha256(_first_der(pem)).hexdigest()
        except (OSError, ValueError):
            fp = "unreadable"
        out[s["name"]] = (fp, f"{fp} serial {s.get('serial_number', '?')} not after {s.get('not_after', '?')}")
    return out


def _first_der(pem: bytes) -> bytes:
    import base64

    text = pem.decode("ascii", "replace")
    start = text.index("-----BEGIN CERTIFICATE-----") + len("-----BEGIN CERTIFICATE-----")
    end = text.index("-----END CERTIFICATE-----", start)
    return base64.b64decode("".join(text[start:end].split()))


def _compare(kind: str, a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    out = []
    for key in sorted(a.keys() | b.keys()):
        if key not in a:
            out.append(Change(kind, "added", key, b[key][1]))
        elif key not in b:
            out.append(Change(kind, "removed", key, a[key][1]))
        elif _canon(a[key][0]) != _canon(b[key][0]):
            detail = a[key][1] if a[key][1] == b[key][1] else f"{a[key][1]} => {b[key][1]}"
            out.append(Change(kind, "changed", key, detail))
    return out


def diff_bundles(a: Bundle, b: Bundle) -> list[Change]:
    def named(items: list[dict[str, Any]], describe) -> dict[str, Any]:  # noqa: ANN001
        return {i["name"]: (i, describe(i)) for i in items}

    def lis(l: dict[str, Any]) -> str:
        sa = (l.get("address") or {}).get("socket_address") or {}
        return f"{sa.get('address')}:{sa.get('port_value')}"

    def eps(x: Bundle) -> dict[str, Any]:
        return {f"{e['cluster']} {e['address']}:{e['port']}": (e, f"{e['status']} weight {e['weight']}")
                for e in endpoint_list(x)}

    changes = _compare("listener", named(a.listeners, lis), named(b.listeners, lis))
    changes += _compare("filter chain", _chains(a), _chains(b))
    changes += _compare("route", _routes(a), _routes(b))
    changes += _compare("cluster", named(a.clusters, lambda c: c.get("type", "STATIC")),
                        named(b.clusters, lambda c: c.get("type", "STATIC")))
    changes += _compare("endpoint", eps(a), eps(b))
    changes += _compare("secret", _secrets(a), _secrets(b))
    return changes


def materialize(path: Path, render_args: list[str], tmp: Path) -> Bundle:
    """A bundle as it is, or the input rendered into ``tmp`` first."""
    if (path / "manifest.json").is_file():
        return load(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    out = tmp / "bundle"
    p = subprocess.run([sys.executable, "-m", "envoygen", "render", "-q", "-f", str(path), "-o", str(out), *render_args],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise InputError(f"{path} does not render:\n{p.stderr.rstrip()}")
    return load(out)


def run(a: Path, b: Path, render_args: list[str]) -> list[Change]:
    with tempfile.TemporaryDirectory(prefix="envoygen-diff-") as tmp:
        ta, tb = Path(tmp) / "a", Path(tmp) / "b"
        ta.mkdir()
        tb.mkdir()
        return diff_bundles(materialize(a, render_args, ta), materialize(b, render_args, tb))


_SIGN = {"added": "+", "removed": "-", "changed": "~"}


def format_text(changes: list[Change]) -> str:
    lines = [f"{_SIGN[c.op]} {c.kind} {c.key}" + (f": {c.detail}" if c.detail else "") for c in changes]
    return "\n".join(lines) + ("\n" if lines else "")


def format_markdown(changes: list[Change], a: str, b: str) -> str:
    if not changes:
        return f"**envoygen diff** `{a}` → `{b}`: no change.\n"
    out = [f"**envoygen diff** `{a}` → `{b}`: {len(changes)} change(s)", ""]
    for kind in ("listener", "filter chain", "route", "cluster", "endpoint", "secret"):
        rows = [c for c in changes if c.kind == kind]
        if not rows:
            continue
        out += [f"### {kind}s", "", "| | name | detail |", "|---|---|---|"]
        out += [f"| {c.op} | `{c.key.replace('|', chr(92) + '|')}` | {c.detail.replace('|', chr(92) + '|')} |" for c in rows]
        out.append("")
    return "\n".join(out)
