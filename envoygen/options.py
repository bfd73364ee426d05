"""Options shared by render, validate, build and run: defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click


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
        click.option("--credentials-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Directory with <credentialName>/tls.crt, tls.key, ca.crt (a Secret in the input wins)."),
        click.option("--allow-expired", is_flag=True, help="Accept expired or not-yet-valid certificates (warning)."),
        click.option("--templates", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Directory of templates searched before the packaged ones."),
        click.option("--bootstrap-format", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True,
                     help="Write envoy.yaml or envoy.json."),
        click.option("--access-log", default=None, metavar="PATH",
                     help="Access log file (e.g. /dev/stdout); overrides meshConfig.accessLogFile. Empty: none."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f
