"""The command line.  Each command parses options, calls the pipeline, prints.

Domain errors are click exceptions with exit codes (errors.py): 1 invalid
input, 2 usage, 3 environment.  Never a traceback.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .errors import FindingsError, InputError
from .options import KeyValueType, render_options, version_option

if TYPE_CHECKING:  # the pipeline is imported by the commands that run it, so --help stays fast
    from .diagnostics import Findings
    from .pipeline import Compiled, Request

# istioctl proxy-config's commands and aliases (envoygen/proxyconfig KINDS; listed here so --help stays light)
PROXY_CONFIG_KINDS = ("listener", "listeners", "l", "route", "routes", "r", "cluster", "clusters", "c", "endpoint",
                      "endpoints", "ep", "secret", "secrets", "s", "all", "a", "bootstrap", "b")

# Commands whose module is imported only when they run; --help lists them with this text.
LAZY_COMMANDS = {
    "certs": ("envoygen.certs_command", "certs", "Mint a development PKI and credentials for `--credentials-dir` (development only)."),
    "diff": ("envoygen.review_commands", "diff_command", "Compare two gateways: bundles, or inputs (rendered first). Exit 0 equal, 1 different."),
    "manifests": ("envoygen.review_commands", "manifests_command", "Kubernetes manifests (and a Compose file) running a built gateway image as N replicas."),
    "graph": ("envoygen.review_commands", "graph_command", "Draw what routes where: listener → filter chain (SNI, TLS) → route config → vhost →..."),
}


def _request(kw: dict[str, Any]) -> Request:
    from .pipeline import Request
    from .resolve import MaterialOptions
    from .translate import Options

    pairs = list(kw.get("port_map") or ())
    seen: dict[int, int] = {}
    for a, b in pairs:
        if a in seen and seen[a] != b:
            raise click.UsageError(f"--port-map {a}={seen[a]} and {a}={b}: one bind port per server port")
        seen[a] = b
    port_map = dict(pairs)
    chosen = kw["install_dir"]
    if not chosen.startswith("/"):
        raise click.UsageError(f"--install-dir {chosen}: must be an absolute path (Envoy opens every bundle file by it)")
    opts = Options(
        port_map=port_map,
        admin_port=kw["admin_port"],
        readiness_port=kw["readiness_port"],
        stats_port=kw["stats_port"],
        access_log=kw.get("access_log"),
        profile=kw.get("profile", "default"),
        max_heap=kw.get("max_heap", 2 * 1024**3),
    )
    material = MaterialOptions(credentials_dir=kw.get("credentials_dir"), allow_expired=kw.get("allow_expired", False),
                               mesh_identity=kw.get("mesh_identity"),
                               jwks_files=tuple(kw.get("jwks") or ()), jwks_fetch=not kw.get("no_jwks_fetch", False))
    return Request(tuple(kw["paths"]), kw["namespace"], kw.get("gateway"), opts, kw.get("templates"),
                   kw.get("bootstrap_format") or "yaml", chosen, material, tuple(kw.get("workload_addresses") or ()))


def _print_findings(findings: Findings, quiet: bool = False) -> None:
    for f in findings:
        if f.severity == "error":
            continue  # printed by FindingsError
        if quiet and f.severity == "info":
            continue
        click.echo(f.format(), err=True)


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            import importlib

            module, attr, _ = LAZY_COMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click's, without importing the lazy commands for their one-line help."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            if name in LAZY_COMMANDS and name not in self.commands:
                rows.append((name, LAZY_COMMANDS[name][2]))
                continue
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FindingsError:
            raise
        except click.ClickException:
            raise
        except (click.exceptions.Exit, click.exceptions.Abort, KeyboardInterrupt):
            raise
        except RecursionError:
            raise InputError("input is nested too deeply to process") from None
        except MemoryError:
            raise InputError("input is too large to process") from None


QUIET = click.option("-q", "--quiet", is_flag=True, help="Print only errors and warnings (no summary, no info findings).")


# Commands that compile once and exit: Python's cyclic GC is paused for them (it
# scanned the growing model and IR again and again, ~20 % of a big render, and
# frees nothing a one-shot process needs back). Not `run`, which lives on.
ONE_SHOT_COMMANDS = frozenset({"render", "validate", "ir", "build", "proxy-config"})
# Of those, the ones whose process ends without freeing its objects one by one (main()
# below): the model, IR and output of a big render take ~0.2 s of CPU to tear down, and
# the OS takes the memory back at once.  Not `build` (the Docker SDK's clean-up runs at exit).
EXIT_AT_ONCE_COMMANDS = frozenset({"render", "validate", "ir", "proxy-config"})
_exit_at_once = False  # set for those commands when main() is the process entry (never for in-process callers)
_main_runs = False
_kept: list[Any] = []  # a command's results, left for the exit instead of being freed one object at a time


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@version_option
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Compile Istio ingress-gateway YAML into a self-contained Envoy gateway.

    \b
    Gateway, VirtualService, DestinationRule, ServiceEntry, Secret, Service and
    IstioOperator in; a static Envoy bootstrap, SDS files and a Docker image out.
    Exit codes: 0 ok, 1 invalid input, 2 usage, 3 environment (Docker, Envoy).
    """
    if ctx.invoked_subcommand in ONE_SHOT_COMMANDS:
        import gc

        gc.freeze()  # what is imported so far is never scanned again
        gc.disable()
    global _exit_at_once
    _exit_at_once = _main_runs and ctx.invoked_subcommand in EXIT_AT_ONCE_COMMANDS


@cli.command()
@render_options
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path),
              help="Bundle directory: absent, empty, or an earlier envoygen bundle (replaced atomically).")
@QUIET
def render(out: Path, quiet: bool, **kw: Any) -> None:
    """Render the bundle (bootstrap, SDS files, certificates, Dockerfile) into OUT."""
    from .pipeline import render_to

    compiled = render_to(_request(kw), out, sys.stdin.buffer)
    if _exit_at_once:
        _kept.append(compiled)
    _print_findings(compiled.findings, quiet)
    for b in compiled.bundles if not quiet else ():
        where = out if compiled.single else out / b.workload.name
        ports = ", ".join(str(l.port) for l in b.bootstrap.listeners) or "none"
        click.echo(f"wrote {where} for gateway {b.workload.namespace}/{b.workload.name} (listeners on {ports})", err=True)


def _validate_with_envoy(compiled: Compiled, root: Path, envoy_path: str | None) -> list[tuple[str, bool, str]]:
    from .envoy import find_envoy, validate

    binary = find_envoy(envoy_path)
    results = []
    for b in compiled.bundles:
        base = root if compiled.single else root / b.workload.name
        ok, output = validate(binary, base / b.bootstrap_file)
        results.append((b.workload.name, ok, output))
    return results


@cli.command()
@render_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: findings and results as JSON on stdout.")
@click.option("--fail-on", type=click.Choice(["error", "warning"]), default="error", show_default=True,
              help="warning: also exit 1 on warnings (strict CI).")
@click.option("--envoy", "envoy_path", default=None, metavar="PATH", help="Envoy binary (default: the embedded one).")
@click.option("--skip-envoy", is_flag=True, help="Only the model and analyzer checks, without Envoy's own validation.")
@QUIET
def validate(fmt: str, fail_on: str, envoy_path: str | None, skip_envoy: bool, quiet: bool, **kw: Any) -> None:
    """Check the input: model, analyzers, and Envoy's own --mode validate."""
    from .pipeline import compile_inputs, render_for_host

    req = _request(kw)
    tmp_root: Path | None = None
    try:
        try:
            if skip_envoy:
                compiled = compile_inputs(req, sys.stdin.buffer)
                results: list[tuple[str, bool, str]] = []
            else:
                compiled, root = render_for_host(req, sys.stdin.buffer)
                tmp_root = root.parent
                results = _validate_with_envoy(compiled, root, envoy_path)
        except FindingsError as exc:
            if fmt == "json":
                click.echo(json.dumps({"ok": False, "findings": [f.as_dict() for f in exc.findings]}, indent=2))
                raise SystemExit(1) from None
            raise
        findings = compiled.findings.sorted()
        envoy_ok = all(ok for _, ok, _ in results)
        warn_fail = fail_on == "warning" and any(f.severity == "warning" for f in findings)
        ok = envoy_ok and not warn_fail
        if fmt == "json":
            click.echo(json.dumps({
                "ok": ok,
                "findings": [f.as_dict() for f in findings],
                "envoy": [{"workload": w, "ok": o, "output": out if not o else ""} for w, o, out in results],
            }, indent=2))
        else:
            _print_findings(compiled.findings, quiet)
            for w, o, out in results:
                if o and quiet:
                    continue
                if o:
                    click.echo(f"{w}: Envoy accepted the configuration", err=True)
                else:
                    click.echo(f"{w}: EG0401 Envoy rejected the configuration:\n{out}", err=True)
            if warn_fail:
                click.echo("error: warnings found and --fail-on warning is set", err=True)
        if not ok:
            raise SystemExit(1)
    finally:
        if tmp_root is not None:
            shutil.rmtree(tmp_root, ignore_errors=True)


@cli.command()
@render_options
@click.option("--envoy", "envoy_path", default=None, metavar="PATH", help="Envoy binary (default: the embedded one).")
@click.option("--log-level", default="warning", show_default=True, help="Envoy log level (Istio's gateways: warning).")
@click.option("--drain-seconds", type=click.FloatRange(min=0), default=5.0, show_default=True, metavar="SECONDS",
              help="On SIGTERM/Ctrl-C: fail readiness, close the listeners, wait at most this long for open "
                   "connections, then stop Envoy (as the image does). 0: stop at once; a second signal cuts it short.")
@click.option("--resolve", "resolve", multiple=True, metavar="NAME[:PORT]=ADDR[:PORT]",
              help="Send this run's traffic for endpoint NAME (on PORT) to ADDR (and its PORT), as curl's "
                   "--resolve, e.g. webapp.istioinaction.svc.cluster.local:8080=127.0.0.1:18080. Repeatable.")
@QUIET
def run(envoy_path: str | None, log_level: str, drain_seconds: float, resolve: tuple[str, ...], quiet: bool,
        **kw: Any) -> None:
    """Render to a temporary bundle and run Envoy on it in the foreground (Ctrl-C drains, then stops).

    \b
    Prints "listening" once Envoy is ready; warns about endpoints that do not
    resolve on this host (--resolve points them elsewhere); a port in use exits 3.
    """
    from . import runcheck
    from .envoy import find_envoy
    from .pipeline import render_for_host
    from .runner import run_supervised

    mapping = runcheck.parse_resolve(resolve)
    binary = find_envoy(envoy_path)
    kw["bootstrap_format"] = kw.get("bootstrap_format") or "json"  # Envoy starts faster from JSON
    compiled, root = render_for_host(_request(kw), sys.stdin.buffer)
    try:
        _print_findings(compiled.findings, quiet=True)
        if not compiled.single:
            raise InputError("several gateway workloads; choose one with --gateway LABELS")
        b = compiled.bundles[0]
        boot = b.bootstrap
        if mapping:
            runcheck.apply_resolve(root / b.bootstrap_file, mapping)
        for cluster, host in runcheck.unresolved(root / b.bootstrap_file):
            click.echo(f"warning: {host} does not resolve on this host: requests to {cluster} will answer "
                       f"503 (point it at a local address with --resolve {host}=ADDR)", err=True)
        runcheck.check_ports_free([(l.address, l.port) for l in boot.listeners]
                                  + [("0.0.0.0", boot.readiness_port), ("0.0.0.0", boot.stats_port),
                                     ("127.0.0.1", boot.admin_port)])
        lines = [f"listening on {l.address}:{l.port} ({l.name})" for l in boot.listeners]
        lines.append(f"readiness http://127.0.0.1:{boot.readiness_port}/healthz/ready; bundle {root}")
        if quiet:
            lines = []
        runcheck.announce_when_ready(boot.readiness_port, lines, lambda line: click.echo(line, err=True))
        # as pilot-agent does: access log lines reach their file within a second (Envoy's default is 10 s)
        cmd = [str(binary), "-c", str(root / b.bootstrap_file), "--log-level", log_level,
               "--disable-hot-restart", "--file-flush-interval-msec", "1000", "--component-log-level", "misc:error"]
        code = run_supervised(cmd, b.bootstrap.admin_port, drain_seconds,
                              lambda line: click.echo(f"envoygen run: {line}", err=True))
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)
    raise SystemExit(code)


@cli.command()
@render_options
@click.option("-t", "--tag", required=True, help="Image tag, e.g. coolstore-gateway:1.0.")
@click.option("--base-image", default=None, metavar="IMAGE",
              help="Image holding /usr/local/bin/envoy (default: built locally from the embedded Envoy).")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a docker save archive (for docker load on an air-gapped host).")
@click.option("--envoy", "envoy_path", default=None, metavar="PATH", help="Envoy binary used to validate.")
@click.option("--iidfile", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the image id to this file (as docker build --iidfile).")
@click.option("--label", "image_labels", multiple=True, type=KeyValueType(),
              help="Image label, repeatable; wins over envoygen's, e.g. "
                   "org.opencontainers.image.source=https://git.example.com/platform/edge (your config repository).")
@click.option("-q", "--quiet", is_flag=True, help="No build progress or summary; print the image id on stdout.")
def build(tag: str, base_image: str | None, save: Path | None, envoy_path: str | None, iidfile: Path | None,
          image_labels: tuple[tuple[str, str], ...], quiet: bool, **kw: Any) -> None:
    """Render, validate with Envoy, and bake the bundle into a Docker image."""
    from .bundle import write_atomically
    from .image import build_image
    from .pipeline import render_bundles, translate_inputs, write_for_host

    kw["bootstrap_format"] = kw.get("bootstrap_format") or "json"  # the image starts Envoy from it: JSON loads faster
    req = _request(kw)
    compiled = translate_inputs(req, sys.stdin.buffer)  # the input is read once, whatever it is
    root = write_for_host(compiled, req)
    try:
        _print_findings(compiled.findings, quiet=True)
        if not compiled.single:
            raise InputError("several gateway workloads; choose one with --gateway LABELS")
        for w, ok, out in _validate_with_envoy(compiled, root, envoy_path):
            if not ok:
                raise InputError(f"EG0401 Envoy rejected the configuration of {w}:\n{out}")
        # the image gets the same IR rendered for the user's --install-dir
        out = root.parent / "image-bundle"
        write_atomically(out, render_bundles(compiled, req, req.install_dir))
        digest = json.loads((out / "manifest.json").read_text())["digest"]
        image_id = build_image(out, tag, base_image=base_image, save=save,
                               labels={**dict(image_labels), "io.envoygen.bundle.digest": digest},
                               progress=(lambda line: None) if quiet else (lambda line: click.echo(line, err=True)))
        if iidfile is not None:
            iidfile.write_text(image_id)
        if quiet:
            click.echo(image_id)  # as docker build -q
            return
        click.echo(f"built {tag} ({image_id}), bundle digest {digest}", err=True)
        if save:
            click.echo(f"saved {save} (docker load -i {save})", err=True)
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


@cli.command("proxy-config")
@click.argument("what", type=click.Choice(sorted(PROXY_CONFIG_KINDS)), metavar="KIND")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", "fmt", type=click.Choice(["short", "json", "yaml", "table"]), default="short",
              show_default=True, help="short: istioctl's table; json/yaml: Envoy's protobuf JSON (camelCase).")
@click.option("--name", default="", help="routes: only this route configuration (e.g. http.8080).")
@click.option("--port", type=int, default=0, help="listeners, clusters, endpoints: only this port.")
@click.option("--fqdn", default="", help="clusters: substring of the service FQDN.")
@click.option("--subset", default="", help="clusters: substring of the subset.")
@click.option("--direction", default="", help="clusters: inbound or outbound.")
@click.option("--address", default="", help="listeners, endpoints: only this address.")
@click.option("--cluster", "cluster_name", default="", help="endpoints: only this cluster.")
@click.option("--status", default="", help="endpoints: only this health status (HEALTHY, UNHEALTHY).")
@click.option("--type", "type", default="", help="listeners: HTTP, TCP or HTTP+TCP.")
@click.option("--verbose", type=click.BOOL, default=True, show_default=True, metavar="BOOL",
              help="listeners, routes: false for istioctl's short form (--verbose=false).")
@click.option("--filters", "with_filters", is_flag=True,
              help="listeners: add a FILTERS column (network filters, HTTP filters in brackets: where policies apply).")
@click.option("-n", "--namespace", default=None, help="The gateway workload's namespace, as istioctl takes it; "
              "must match the bundle's.")
@QUIET
def proxy_config(what: str, bundle: Path, fmt: str, namespace: str | None, quiet: bool, cluster_name: str,
                 **flt: Any) -> None:
    """istioctl proxy-config views of a rendered bundle (alias: pc).

    \b
    KIND as istioctl names it: listener|listeners|l, route|routes|r,
    cluster|clusters|c, endpoint|endpoints|ep, secret|secrets|s, all|a,
    bootstrap|b. BUNDLE stands where istioctl takes a pod, e.g.
    envoygen pc routes out/ --name http.8080 -o json
    """
    from .proxyconfig import Filters, load, show

    b = load(bundle)
    ns = b.workload.get("namespace")
    if namespace is not None and ns and namespace != ns:
        raise InputError(f"{bundle} is the bundle of {b.workload.get('name')} in namespace {ns}, not {namespace}")
    click.echo(show(what, b, "short" if fmt == "table" else fmt, Filters(cluster=cluster_name, **flt)), nl=False)


cli.add_command(proxy_config, "pc")


@cli.command("ir")
@render_options
@QUIET
def ir_command(quiet: bool, **kw: Any) -> None:
    """Print what the resolve and translate stages made of the input, as JSON.

    \b
    For each gateway workload: "resolved" (its service registry, merged
    DestinationRules, VirtualServices per Gateway) and "ir" (the IR the
    templates render). Private keys appear as size and SHA-256 only.
    """
    from .irdump import dump_bootstrap, pretty_json
    from .pipeline import translate_inputs
    from .resolve import summary

    req = _request(kw)
    compiled = translate_inputs(req, sys.stdin.buffer)
    _print_findings(compiled.findings, quiet=True)
    out = {b.workload.name: {"resolved": summary(b.view), "ir": dump_bootstrap(b.bootstrap)} for b in compiled.bundles}
    click.echo(pretty_json(out))


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@QUIET
def completion(shell: str, quiet: bool) -> None:
    """Print the shell completion script (bash: source <(envoygen completion bash))."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # click ships all three
    click.echo(cls(cli, {}, "envoygen", "_ENVOYGEN_COMPLETE").source())


def main() -> None:
    """The process entry point (``envoygen``, ``python -m envoygen``); never called by tests in-process."""
    global _main_runs
    _main_runs = True
    try:
        cli.main(prog_name="envoygen", standalone_mode=True)
    except RecursionError:
        click.echo("error: input is nested too deeply to process", err=True)
        sys.exit(1)
    except SystemExit as exc:
        if _exit_at_once and (exc.code is None or isinstance(exc.code, int)):
            _exit_without_teardown(exc.code or 0)
        raise


def _exit_without_teardown(code: int) -> None:
    """Flush and end the process now, without the interpreter's teardown (EXIT_AT_ONCE_COMMANDS);
    the normal exit when a flush fails (Python reports a closed pipe), another thread runs, or a
    profiler or tracer (``python -m cProfile``, coverage) waits to write its results at exit."""
    import os
    import threading

    try:
        if threading.active_count() == 1 and sys.getprofile() is None and sys.gettrace() is None:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    main()
