"""Telemetry accessLogging → the gateway's access logger, as pilot/pkg/model/telemetry.go ``mergeLogs``
resolves it for a gateway (workload mode CLIENT): the most specific level that names providers picks
them (else meshConfig.defaultProviders.accessLogging); each level's entries then disable a provider or
set its ``filter.expression`` (Envoy's CEL access-log filter). Providers: ``envoy`` (a file logger on
/dev/stdout, Istio's text format) and meshConfig.extensionProviders of type envoyFileAccessLog (text or
JSON ``labels``). Without a Telemetry accessLogging, meshConfig.accessLogFile decides, as before."""

from __future__ import annotations

from typing import Any

from .. import ir
from ..model import Res
from ..model.operator import MeshConfig
from .context import Context

MODE = "CLIENT"  # Istio's workload mode for gateway listeners


def _mode_ok(entry: Any) -> bool:
    return entry.match is None or entry.match.mode in ("CLIENT_AND_SERVER", MODE)


def merge_logs(chain: list[Res[Any]], defaults: list[str]) -> dict[str, tuple[bool, str]]:
    """Provider → (disabled, filter expression), as Istio's mergeLogs."""
    logs = [t.obj.spec.access_logging for t in chain if t.obj.spec.access_logging]
    if not logs:
        return {p: (False, "") for p in defaults}
    names = list(defaults)
    filters: dict[str, str] = {}
    for level in logs:
        level_names: list[str] = []
        for e in level:
            if not _mode_ok(e):
                continue
            subs = [p.name for p in e.providers]
            level_names += [n for n in subs if n not in level_names]
            for prov in subs:
                filters[prov] = e.filter.expression if e.filter else ""
        if level_names:
            names = level_names
    out: dict[str, tuple[bool, str]] = {}
    parent = list(defaults)
    for level in logs:
        for e in level:
            provs = [p.name for p in e.providers] or parent
            parent = provs
            for prov in provs:
                if prov not in names or not _mode_ok(e):
                    continue
                out[prov] = (True, "") if e.disabled else (False, filters.get(prov, ""))
    return out


def _provider_log(name: str, mesh: MeshConfig, expression: str, text_default: str) -> ir.AccessLog | None:
    prov = next((p for p in mesh.extension_providers if p.name == name), None)
    if prov is None and name == "envoy":
        return ir.AccessLog("/dev/stdout", "TEXT", text_format=text_default, filter_expression=expression)
    if prov is None or prov.envoy_file_access_log is None:
        return None
    f = prov.envoy_file_access_log
    fmt = f.log_format
    if fmt is not None and fmt.labels:
        return ir.AccessLog(f.path, "JSON", json_format=tuple(sorted(fmt.labels.items())), filter_expression=expression)
    text = fmt.text if fmt is not None and fmt.text else text_default
    return ir.AccessLog(f.path, "TEXT", text_format=text if text.endswith("\n") else text + "\n",
                        filter_expression=expression)


def telemetry_access_log(ctx: Context, text_default: str) -> tuple[bool, ir.AccessLog | None]:
    """(decided, logger): decided is False when no Telemetry configures access logging."""
    chain = ctx.view.telemetries
    if not any(t.obj.spec.access_logging for t in chain):
        return False, None
    mesh = ctx.workload.mesh
    defaults = mesh.default_providers.access_logging if mesh.default_providers else []
    active = {p: e for p, (off, e) in merge_logs(chain, defaults).items() if not off}
    last = next(t for t in reversed(chain) if t.obj.spec.access_logging)
    where = (last.file, last.line("spec", "accessLogging"), "spec.accessLogging")
    if len(active) > 1:
        ctx.findings.error(*where[:2], "EG0222", f"Telemetry {last.key}: access logging to several providers at once "
                           f"({', '.join(sorted(active))}) is not implemented; choose one", where[2])
        return True, None
    for name, expression in active.items():
        log = _provider_log(name, mesh, expression, text_default)
        if log is None:
            ctx.findings.error(*where[:2], "EG0222", f"Telemetry {last.key}: access-log provider {name!r} is neither "
                               "'envoy' nor a meshConfig.extensionProviders entry of type envoyFileAccessLog", where[2])
        return True, log
    return True, None
