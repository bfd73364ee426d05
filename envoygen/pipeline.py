"""The only module that knows the order of the stages.  It never prints.

load → model → analyze → translate (once per workload) → render + bundle (once
per install directory) → (write | validate | image)

``translate_inputs`` stops after translation; ``render_bundles`` turns that IR
into bundle files for one install directory, as often as needed: ``build``
renders one IR twice (a temp dir Envoy validates, then the user's
``--install-dir`` it bakes) and never reads its input twice.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from . import ir
from .analyze import analyze
from .bundle import bootstrap_name, bundle_files, several_bundles, write_atomically
from .diagnostics import Findings
from .errors import FindingsError, InputError
from .load import load_paths
from .model import parse_documents
from .render import Renderer
from .resolve import MaterialOptions, View, resolve
from .resolve.scope import scope_for
from .resolve.workload_entries import add_workload_addresses
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
    install_dir: str = "/etc/envoy"
    material: MaterialOptions = field(default_factory=MaterialOptions)  # where credentials come from, expiry policy
    workload_addresses: tuple[tuple[str, str, int | None], ...] = ()  # --workload-address NAME=ADDR[:PORT]


@dataclass
class Bundle:
    workload: Workload
    bootstrap: ir.Bootstrap
    meta: dict[str, Any]  # what the manifest records besides files and install dir
    view: View | None = None  # what the resolve stage saw for this workload
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # manifest included, once rendered

    @property
    def bootstrap_file(self) -> str:
        return "envoy.json" if "envoy.json" in self.files else "envoy.yaml"


@dataclass
class Compiled:
    bundles: list[Bundle]
    findings: Findings
    single: bool  # one bundle written to OUT itself


# EG0104 (an unsupported field) in a resource no built gateway uses is only a warning: it waits for the scope rule
DEFERRED = frozenset({"EG0104"})


def _stop_on_errors(findings: Findings, deferred: frozenset[str] = frozenset()) -> None:
    if any(f.code not in deferred for f in findings.errors):
        raise FindingsError(findings.sorted())


def _check_port_collisions(boot: ir.Bootstrap, workload: str, findings: Findings) -> None:
    """Envoy's --mode validate binds no socket, so an address used twice is caught here.

    Two binds collide on the same port when the addresses are equal.  Listeners bind with
    SO_REUSEPORT (Envoy's default), so ``0.0.0.0:P`` and ``127.0.0.1:P`` live side by side, as
    Istio's listeners for servers with distinct ``bind`` do; the admin socket has no
    SO_REUSEPORT, so next to it 0.0.0.0 collides with any address."""
    users: list[tuple[str, int, str]] = [(l.address, l.port, f"listener {l.name}") for l in boot.listeners]
    users += [("127.0.0.1", boot.admin_port, "--admin-port"), ("0.0.0.0", boot.readiness_port, "--readiness-port"),
              ("0.0.0.0", boot.stats_port, "--stats-port")]
    for i, (addr, port, who) in enumerate(users):
        for addr2, port2, who2 in users[i + 1:]:
            admin = "--admin-port" in (who, who2)
            if port == port2 and (addr == addr2 or (admin and "0.0.0.0" in (addr, addr2))):
                findings.error("--port-map", 0, "EG0214",
                               f"gateway {workload}: {addr}:{port} is used by {who} and {who2}; Envoy could not bind it twice",
                               hint="change --port-map, --admin-port, --readiness-port or --stats-port")


def _check_served(w: Workload, boot: ir.Bootstrap, any_served: bool, selected: bool, where: str,
                  findings: Findings) -> None:
    """EG0212: a bundle that would answer nothing is an error (an empty or wrong input must not
    overwrite a working bundle); a workload among several that no Gateway selects is a warning."""
    labels = ",".join(f"{k}={v}" for k, v in sorted(w.labels.items()))
    if not selected:
        text = f"no Gateway selects gateway workload {w.namespace}/{w.name} ({labels})"
        if any_served:
            findings.warning(where, 0, "EG0212", text + "; its bundle serves only readiness and stats")
        else:
            findings.error(where, 0, "EG0212", text + "; the bundle would serve nothing",
                           hint="add a Gateway whose selector matches it, or pick a workload with --gateway")
    elif not boot.listeners:
        findings.error(where, 0, "EG0212",
                       f"gateway workload {w.namespace}/{w.name} ({labels}): no server of its Gateways produces a listener, "
                       "so the bundle would serve nothing", hint="see the EG0212 warnings on its servers")


def translate_inputs(req: Request, stdin: BinaryIO | None = None) -> Compiled:
    """Load, model, analyze and translate; the bundles hold IR, no files yet."""
    docs, findings, inputs = load_paths(list(req.paths), stdin)
    input_digests = [{"path": path, "sha256": digest} for path, digest in inputs]
    if not docs and not findings.errors:
        findings.warning(", ".join(req.paths), 0, "EG0001", "the input holds no YAML document; the bundle will serve nothing")
    resources = parse_documents(docs, req.namespace, findings)
    add_workload_addresses(resources, req.workload_addresses, req.namespace, findings)
    _stop_on_errors(findings, deferred=DEFERRED)  # unsupported fields wait for the scope rule
    workloads = workloads_from(resources, findings)
    _stop_on_errors(findings, deferred=DEFERRED)
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
    views = [resolve(resources, w, findings, req.material) for w in workloads]  # once per workload, every finding kept
    analyze(resources, workloads, views, findings)
    scope = scope_for(resources, workloads_to_build)
    scope.demote(findings)  # errors count only in resources a built gateway uses
    view_of = {id(w): v for w, v in zip(workloads, views)}
    used_ports = {s.port.number for g in resources.gateways for s in g.obj.spec.servers}
    for port in sorted(req.options.port_map):
        if port not in used_ports:
            findings.warning("--port-map", 0, "EG0211", f"--port-map {port}={req.options.port_map[port]}: no Gateway server uses port {port}")
    _stop_on_errors(findings)
    bundles: list[Bundle] = []
    served = [w for w in workloads_to_build if any(w.selects(g.obj.spec.selector) for g in resources.gateways)]
    for w in workloads_to_build:
        boot = translate(view_of[id(w)], req.options, findings)
        _check_port_collisions(boot, w.name, findings)
        _check_served(w, boot, bool(served), w in served, ", ".join(req.paths), findings)
        ports = {}
        for g in resources.gateways:
            if w.selects(g.obj.spec.selector):
                for s in g.obj.spec.servers:
                    ports[str(s.port.number)] = w.bind_port(s.port.number, req.options.port_map)
        meta = {
            "workload": {"name": w.name, "namespace": w.namespace, "labels": dict(sorted(w.labels.items()))},
            "ports": {"servers": dict(sorted(ports.items(), key=lambda kv: int(kv[0]))), "admin": boot.admin_port,
                      "readiness": boot.readiness_port, "stats": boot.stats_port,
                      "listeners": sorted({l.port for l in boot.listeners})},
            "inputs": input_digests,
        }
        bundles.append(Bundle(w, boot, meta, view_of[id(w)]))
    scope.demote(findings)  # translation reads every DestinationRule: the same scope rule
    _stop_on_errors(findings)  # every workload's errors, together
    return Compiled(bundles, findings, single=req.gateway is not None or len(workloads_to_build) == 1)


def render_bundles(compiled: Compiled, req: Request, install_dir: str, host_layout: bool = False) -> dict[str, tuple[bytes, int]]:
    """Render every bundle of ``compiled`` for ``install_dir``; return the output tree.

    ``host_layout``: with several bundles, each is installed at ``<install_dir>/<workload>``."""
    renderer = Renderer(req.templates)
    for b in compiled.bundles:
        where = install_dir
        if host_layout and not compiled.single:
            where = f"{install_dir.rstrip('/')}/{b.workload.name}"
        b.files = bundle_files(renderer, b.bootstrap, where, req.bootstrap_format, b.meta)
        _check_heap(compiled, req, b)
        for p in renderer.unmatched_patches:
            file, _, line = p.origin.rpartition(":")
            compiled.findings.warning(file, int(line), "EG0218",
                                      f"{p.label} ({p.apply_to} {p.operation}) matches nothing in gateway "
                                      f"{b.workload.namespace}/{b.workload.name}'s configuration; it changes nothing",
                                      "spec." + p.label.split(" ", 2)[2], "compare the match with `envoygen proxy-config`")
    if compiled.single:
        return dict(compiled.bundles[0].files)
    return several_bundles({b.workload.name: b.files for b in compiled.bundles})


# Envoy's heap once a bootstrap is loaded, per byte of it (bench/startup.py, 10,000 hosts of
# issue 14's shape: ~1.87 GB of heap, 87 % of 2 GiB, for a 46.9 MB envoy.json / 61 MB envoy.yaml)
_HEAP_PER_BYTE = {"json": 40, "yaml": 30}


def _check_heap(compiled: Compiled, req: Request, b: Bundle) -> None:
    """EG0403: a bootstrap whose loaded size comes near --max-heap would have the overload
    manager shrink the heap (95 %) or refuse requests (98 %) from the start."""
    max_heap = req.options.max_heap
    size = len(b.files[bootstrap_name(req.bootstrap_format)][0])
    need = size * _HEAP_PER_BYTE.get(req.bootstrap_format, 40)
    if max_heap and need >= 0.8 * max_heap:
        gib = 2**30
        compiled.findings.warning(
            ", ".join(req.paths), 0, "EG0403",
            f"gateway {b.workload.namespace}/{b.workload.name}: its {size / 1e6:.1f} MB bootstrap needs about "
            f"{need / gib:.2f} GiB of Envoy heap once loaded, {100 * need / max_heap:.0f} % of --max-heap "
            f"({max_heap / gib:.2f} GiB); the overload manager refuses requests at 98 %",
            "", f"raise --max-heap (and the container's memory limit) to {-(-2 * need // gib)}Gi or more")


def _release_views(compiled: Compiled) -> Compiled:
    """Drop the resolve stage's views before rendering: nothing after translate reads them
    (``envoygen ir`` does, and renders nothing), and they hold the input's models, ~15 MiB
    at 1,000 hosts that the render would otherwise allocate beside."""
    for b in compiled.bundles:
        b.view = None
    return compiled


def compile_inputs(req: Request, stdin: BinaryIO | None = None) -> Compiled:
    """Translate and render for ``req.install_dir`` (the files are on each bundle)."""
    compiled = _release_views(translate_inputs(req, stdin))
    render_bundles(compiled, req, req.install_dir)
    return compiled


def render_to(req: Request, out: Path, stdin: BinaryIO | None = None) -> Compiled:
    compiled = _release_views(translate_inputs(req, stdin))
    write_atomically(out, render_bundles(compiled, req, req.install_dir))
    return compiled


def write_for_host(compiled: Compiled, req: Request) -> Path:
    """Write ``compiled`` into a fresh temp directory whose path is also the install
    dir (for validate and run); return the bundle root (its parent is the temp dir)."""
    tmp = Path(tempfile.mkdtemp(prefix="envoygen-"))
    out = tmp / "bundle"
    try:
        write_atomically(out, render_bundles(compiled, req, str(out), host_layout=True))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing is left behind by a refused input
        raise
    return out


def render_for_host(req: Request, stdin: BinaryIO | None = None) -> tuple[Compiled, Path]:
    """Translate, then render into a fresh temp directory whose path is also the install dir."""
    compiled = _release_views(translate_inputs(req, stdin))
    return compiled, write_for_host(compiled, req)
