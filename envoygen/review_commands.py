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
