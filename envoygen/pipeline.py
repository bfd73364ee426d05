"""The only module that knows the order of the stages.  It never prints.

load → model → analyze → translate → render → (bundle | validate | image)
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from . import __version__, ir
from .analyze import analyze
from .bundle import MANIFEST, manifest_for, write_atomically
from .diagnostics import Findings
from .errors import FindingsError, InputError
from .load import load_paths
from .model import parse_documents
from .render import ENVOY_VERSION, Renderer, bundle_files
from .translate import Options, translate
from .workloads import Workload, workloads_from


@dataclass(frozen=True)
class Request:
    paths: tuple[str, ...]
    namespace: str = "default"
    gateway: dict[str, str] | None = None
    options: Options = field(default_factory=Options)
    templates: Path | None = None
    bootstrap_format: str = "yaml"
    host_layout: bool = False  # several bundles: each installed at <install_dir>/<workload>


@dataclass
class Bundle:
    workload: Workload
    bootstrap: ir.Bootstrap
    files: dict[str, tuple[bytes, int]]  # manifest included

    @property
    def bootstrap_file(self) -> str:
        return "envoy.json" if "envoy.json" in self.files else "envoy.yaml"


@dataclass
class Compiled:
    bundles: list[Bundle]
    findings: Findings
    single: bool  # one bundle written to OUT itself


def _stop_on_errors(findings: Findings) -> None:
    if findings.errors:
        raise FindingsError(findings.sorted())


def _check_port_collisions(boot: ir.Bootstrap, workload: str, findings: Findings) -> None:
    """Envoy's --mode validate binds no socket, so an address used twice is caught here.

    Two binds collide on the same port when the addresses are equal or one is 0.0.0.0."""
    users: list[tuple[str, int, str]] = [(l.address, l.port, f"listener {l.name}") for l in boot.listeners]
    users += [("127.0.0.1", boot.admin_port, "--admin-port"), ("0.0.0.0", boot.readiness_port, "--readiness-port"),
              ("0.0.0.0", boot.stats_port, "--stats-port")]
    for i, (addr, port, who) in enumerate(users):
        for addr2, port2, who2 in users[i + 1:]:
            if port == port2 and (addr == addr2 or "0.0.0.0" in (addr, addr2)):
                findings.error("--port-map", 0, "EG0214",
                               f"gateway {workload}: {addr}:{port} is used by {who} and {who2}; Envoy could not bind it twice",
                               hint="change --port-map, --admin-port, --readiness-port or --stats-port")


def compile_inputs(req: Request, stdin: BinaryIO | None = None) -> Compiled:
    docs, findings, inputs = load_paths(list(req.paths), stdin)
    input_digests = []
    for p in inputs:
        if p != "<stdin>":
            try:
                input_digests.append({"path": p, "sha256": hashlib.sha256(Path(p).read_bytes()).hexdigest()})
            except OSError:
                pass
    if not docs and not findings.errors:
        findings.warning(", ".join(req.paths), 0, "EG0001", "the input holds no YAML document; the bundle will serve nothing")
    resources = parse_documents(docs, req.namespace, findings)
    _stop_on_errors(findings)
    workloads = workloads_from(resources, findings)
    _stop_on_errors(findings)
    if req.gateway is not None:
        chosen = [w for w in workloads if all(w.labels.get(k) == v for k, v in req.gateway.items())]
        if not chosen:
            raise InputError(
                "--gateway " + ",".join(f"{k}={v}" for k, v in req.gateway.items())
                + " matches no gateway workload; known: "
                + "; ".join(f"{w.namespace}/{w.name} " + ",".join(f"{k}={v}" for k, v in sorted(w.labels.items())) for w in workloads))
        workloads_to_build = chosen[:1]
    else:
        workloads_to_build = workloads
    analyze(resources, workloads, findings)
    used_ports = {s.port.number for g in resources.gateways for s in g.obj.spec.servers}
    for port in sorted(req.options.port_map):
        if port not in used_ports:
            findings.warning("--port-map", 0, "EG0211", f"--port-map {port}={req.options.port_map[port]}: no Gateway server uses port {port}")
    _stop_on_errors(findings)
    bundles: list[Bundle] = []
    several = req.gateway is None and len(workloads_to_build) > 1
    for w in workloads_to_build:
        opts = req.options
        if req.host_layout and several:
            opts = replace(opts, install_dir=f"{opts.install_dir.rstrip('/')}/{w.name}")
        renderer = Renderer(opts.install_dir, req.templates)
        boot = translate(resources, w, opts, findings)
        _check_port_collisions(boot, w.name, findings)
        if not boot.listeners and not any(w.selects(g.obj.spec.selector) for g in resources.gateways):
            findings.warning(", ".join(req.paths), 0, "EG0212",
                             f"no Gateway selects gateway workload {w.namespace}/{w.name} "
                             f"({','.join(f'{k}={v}' for k, v in sorted(w.labels.items()))}); "
                             "its bundle serves only readiness and stats")
        _stop_on_errors(findings)
        files = bundle_files(renderer, boot, req.bootstrap_format)
        bootstrap_file = "envoy.json" if "envoy.json" in files else "envoy.yaml"
        ports = {}
        for g in resources.gateways:
            if w.selects(g.obj.spec.selector):
                for s in g.obj.spec.servers:
                    ports[str(s.port.number)] = w.bind_port(s.port.number, req.options.port_map)
        meta = {
            "version": __version__,
            "envoy_version": ENVOY_VERSION,
            "bootstrap": bootstrap_file,
            "workload": {"name": w.name, "namespace": w.namespace, "labels": dict(sorted(w.labels.items()))},
            "install_dir": boot.install_dir,
            "ports": {"servers": dict(sorted(ports.items(), key=lambda kv: int(kv[0]))), "admin": boot.admin_port,
                      "readiness": boot.readiness_port, "stats": boot.stats_port,
                      "listeners": sorted({l.port for l in boot.listeners})},
            "inputs": input_digests,
        }
        files[MANIFEST] = (manifest_for(files, meta), 0o644)
        bundles.append(Bundle(w, boot, files))
    return Compiled(bundles, findings, single=req.gateway is not None or len(workloads_to_build) == 1)


def output_tree(compiled: Compiled) -> dict[str, tuple[bytes, int]]:
    if compiled.single:
        return dict(compiled.bundles[0].files)
    tree: dict[str, tuple[bytes, int]] = {}
    names = []
    for b in compiled.bundles:
        names.append(b.workload.name)
        for rel, v in b.files.items():
            tree[f"{b.workload.name}/{rel}"] = v
    top = {"generator": "envoygen", "version": __version__, "bundles": sorted(names)}
    import json

    tree[MANIFEST] = ((json.dumps(top, indent=2, sort_keys=True) + "\n").encode(), 0o644)
    return tree


def render_to(req: Request, out: Path, stdin: BinaryIO | None = None) -> Compiled:
    compiled = compile_inputs(req, stdin)
    write_atomically(out, output_tree(compiled))
    return compiled


def render_for_host(req: Request, stdin: BinaryIO | None = None) -> tuple[Compiled, Path]:
    """Render into a fresh temp directory whose path is also the install dir (for validate and run)."""
    tmp = Path(tempfile.mkdtemp(prefix="envoygen-"))
    out = tmp / "bundle"
    host_req = replace(req, options=replace(req.options, install_dir=str(out)), host_layout=True)
    try:
        compiled = compile_inputs(host_req, stdin)
        write_atomically(out, output_tree(compiled))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing is left behind by a refused input
        raise
    return compiled, out
