"""``envoygen certs``: the command line of the development PKI in :mod:`.certs`.

Parses and validates the options (usage errors, exit 2), lets
:func:`~envoygen.certs_dir.write_credentials` do the work, and prints what it wrote.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path

import click

from .certs import CA_DIR, DEFAULT_CA_NAME, KEY_TYPES
from .certs_dir import write_credentials
from .credentials import valid_credential_name

__all__ = ["certs"]


def _parse_pairs(values: Sequence[str], option: str) -> list[tuple[str, str]]:
    pairs, seen = [], set()
    for v in values:
        name, sep, rest = v.partition("=")
        if not sep or not rest:
            raise click.BadParameter(f"expected NAME=VALUE, got {v!r}", param_hint=option)
        if not valid_credential_name(name):
            raise click.BadParameter(
                f"{name!r} is not a valid Kubernetes Secret name (lower-case letters, digits, '-', '.')",
                param_hint=option,
            )
        if name in seen:
            raise click.BadParameter(f"{name!r} is given twice", param_hint=option)
        seen.add(name)
        pairs.append((name, rest))
    return pairs


def _valid_host(h: str) -> bool:
    try:
        ipaddress.ip_address(h)
        return True
    except ValueError:
        pass
    bare = h[2:] if h.startswith("*.") else h
    return valid_credential_name(bare)


@click.command("certs")
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write (the --credentials-dir layout); created if absent.")
@click.option("--ca-name", default=None, metavar="NAME",
              help=f"Name of the development CA: 'NAME Root CA' and 'NAME Intermediate CA' "
                   f"(default '{DEFAULT_CA_NAME}'). An existing CA in DIR is reused.")
@click.option("--server", "servers", multiple=True, metavar="NAME=HOST[,HOST...]",
              help="A server credential NAME for these hosts (SANs; '*.example.com' wildcards allowed).")
@click.option("--client", "clients", multiple=True, metavar="NAME=CN",
              help="A client credential NAME with subject CN=CN.")
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 36500),
              help="Validity of server and client certificates (never beyond the CA's).")
@click.option("--ca-days", default=None, type=click.IntRange(1, 36500),
              help="Validity of a newly created CA (default: the larger of 3650 and --days).")
@click.option("--key-type", default="ec", show_default=True, type=click.Choice(KEY_TYPES),
              help="Key type for new keys: ECDSA P-256 or RSA 2048.")
@click.option("--namespace", default="istio-system", show_default=True,
              help="Namespace of the Secrets written with --secrets (the gateway workload's namespace).")
@click.option("--secrets", "secrets_file", default=None, type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE.yaml", help="Also write the credentials as Kubernetes Secrets to this file.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
def certs(out: Path, ca_name, servers, clients, days, ca_days, key_type, namespace, secrets_file, quiet) -> None:
    """Mint a development PKI and credentials for `--credentials-dir` (development only).

    Creates, or reuses, a root and an intermediate CA in OUT/_ca/, then for each
    --server and --client writes OUT/NAME/tls.crt (leaf + intermediate),
    tls.key (mode 0600) and ca.crt (the root, which also validates the clients,
    so MUTUAL works out of the box). Existing files are overwritten only if
    this command wrote them and they are unchanged.
    """
    server_pairs = _parse_pairs(servers, "--server")
    client_pairs = _parse_pairs(clients, "--client")
    dup = {n for n, _ in server_pairs} & {n for n, _ in client_pairs}
    if dup:
        raise click.BadParameter(f"{', '.join(sorted(dup))} given both as --server and --client")
    for name, hosts in server_pairs:
        for h in hosts.split(","):
            if not h or not _valid_host(h.lower()):
                raise click.BadParameter(f"{h!r} (for {name}) is not a DNS name, *.wildcard or IP", param_hint="--server")
    if not valid_credential_name(namespace):
        raise click.BadParameter(f"{namespace!r} is not a valid namespace", param_hint="--namespace")

    written = write_credentials(
        out,
        [(name, [h.lower() for h in hosts.split(",")]) for name, hosts in server_pairs],
        client_pairs,
        ca_name=ca_name,
        days=days,
        ca_days=ca_days,
        key_type=key_type,
        namespace=namespace,
        secrets_file=secrets_file,
    )
    if quiet:
        return
    # a summary: stderr, as every command's (stdout stays for data)
    click.echo(f"CA: {written.ca_subject} in {out / CA_DIR}", err=True)
    for line in written.summary:
        click.echo(line, err=True)
    if secrets_file is not None:
        click.echo(f"Secrets ({written.secrets}) in namespace {namespace}: {secrets_file}", err=True)
    click.echo(f"Credentials in {out} (use --credentials-dir {out}); development only.", err=True)
