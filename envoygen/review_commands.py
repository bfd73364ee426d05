"""Review commands: ``diff`` (what changes between two gateways) and ``graph``
(what routes where). Loaded by the CLI only when one of them runs."""

from __future__ import annotations

from pathlib import Path

import click

QUIET = click.option("-q", "--quiet", is_flag=True, help="Print only the result (no summary on stderr).")


@click.command("diff")
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "markdown"]), default="text", show_default=True,
              help="markdown: tables for a review comment.")
@click.option("--credentials-dir", type=click.Path(file_okay=False), default=None,
              help="For inputs (not bundles): credentials, as render takes them.")
@QUIET
def diff_command(a: Path, b: Path, fmt: str, credentials_dir: str | None, quiet: bool) -> None:
    """Compare two gateways: bundles, or inputs (rendered first). Exit 0 equal, 1 different.

    \b
    Listeners, filter chains, routes, clusters, endpoints and secrets are
    reported added (+), removed (-) or changed (~); certificates by
    fingerprint and serial, never key bytes.
    """
    from .bundlediff import format_markdown, format_text, run as run_diff

    changes = run_diff(a, b, ["--credentials-dir", credentials_dir] if credentials_dir else [])
    click.echo(format_markdown(changes, str(a), str(b)) if fmt == "markdown" else format_text(changes), nl=False)
    if not quiet:
        click.echo(f"{len(changes)} change(s)" if changes else "no change", err=True)
    raise SystemExit(1 if changes else 0)


@click.command("graph")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here (default: stdout).")
@click.option("--format", "fmt", type=click.Choice(["html", "mermaid", "dot"]), default="html", show_default=True,
              help="html: a self-contained page (no external resources); mermaid or dot: text for other tools.")
@QUIET
def graph_command(bundle: Path, out: Path | None, fmt: str, quiet: bool) -> None:
    """Draw what routes where: listener → filter chain (SNI, TLS) → route config → vhost → route → cluster → endpoints."""
    from .graph import build, to_dot, to_html, to_mermaid
    from .proxyconfig import load

    b = load(bundle)
    g = build(b)
    w = b.workload
    text = {"html": lambda: to_html(g, f"envoygen graph: {w.get('namespace', '')}/{w.get('name', bundle.name)}"),
            "mermaid": lambda: to_mermaid(g), "dot": lambda: to_dot(g)}[fmt]()
    if out is None:
        click.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    if not quiet:
        click.echo(f"wrote {out} ({len(g.nodes)} nodes, {len(g.edges)} edges)", err=True)


@click.command("manifests")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--image", required=True, help="The gateway image (envoygen build -t IMAGE), as the engine pulls it.")
@click.option("--replicas", type=click.IntRange(1, 1000), default=2, show_default=True)
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the files (created; files of the same name replaced).")
@click.option("--service-type", type=click.Choice(["LoadBalancer", "NodePort"]), default="LoadBalancer",
              show_default=True)
@click.option("--hpa-max", type=click.IntRange(1, 1000), default=None,
              help="Also a HorizontalPodAutoscaler from --replicas up to this many (CPU 80 %).")
@click.option("--drain-seconds", type=click.IntRange(0, 600), default=5, show_default=True,
              help="envoygen-init's drain on SIGTERM; the termination grace covers it.")
@click.option("--compose", is_flag=True, help="Also compose.yaml: the replicas on one Docker host.")
@click.option("--host-port-base", type=click.IntRange(1024, 65000), default=18000, show_default=True,
              help="compose: replica r publishes its ports on 127.0.0.1 from BASE + (r-1) * (number of ports).")
@QUIET
def manifests_command(bundle: Path, image: str, replicas: int, out: Path, service_type: str, hpa_max: int | None,
                      drain_seconds: int, compose: bool, host_port_base: int, quiet: bool) -> None:
    """Kubernetes manifests (and a Compose file) running IMAGE, built from BUNDLE, as N replicas.

    \b
    deployment.yaml  Deployment: readiness on the readiness port, preStop pause and a
                     grace covering the drain, uid 101, read-only root filesystem
    service.yaml     Service (LoadBalancer or NodePort) with the gateway's ports
    pdb.yaml         PodDisruptionBudget (maxUnavailable 1)
    hpa.yaml         HorizontalPodAutoscaler (--hpa-max)
    secrets.yaml     each credential as a Secret (mode 0600), mounted where the
                     SDS files watch: updating the Secret rotates without a restart
    compose.yaml     --compose: one service per replica, ports on 127.0.0.1
    """
    from . import manifests

    files = manifests.kubernetes(bundle, image, replicas, service_type, hpa_max, drain_seconds)
    table: list[dict] = []
    if compose:
        files["compose.yaml"], table = manifests.compose(bundle, image, replicas, host_port_base, drain_seconds)
    manifests.write(out, files)
    if not quiet:
        click.echo(f"wrote {', '.join(sorted(files))} to {out}", err=True)
        for row in table:
            click.echo(f"replica {row['replica']}: port {row['port']} on 127.0.0.1:{row['host_port']}", err=True)
