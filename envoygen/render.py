"""IR → text through the Jinja templates in ``templates/``.

One environment: StrictUndefined, every filter registered here, a user's
``--templates DIR`` searched before the packaged templates.  The packaged
templates write every scalar through ``|j`` (JSON, valid YAML), so their output
is YAML by construction (tests/test_golden.py parses every golden, ``validate``
has Envoy read it); with a user's ``--templates`` every rendered YAML file is
parsed back before it is returned, so a template can never produce a file
Envoy cannot read as YAML.  ``--bootstrap-format json`` renders the packaged
templates rewritten to write JSON (jsontemplates, jsonemit, jsonrender): the
JSON yamljson would read from their YAML, without rendering and reading YAML.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import stat
from importlib import resources as ilr
from pathlib import Path
from typing import Any

import jinja2
import yaml

from . import __version__, ir, jsonrender, jsontemplates, yamljson
from .errors import InputError
from .patch import apply_patches

ENVOY_VERSION = "1.40.0"


def packaged_templates() -> Path:
    """The repository's top-level templates/ (editable install) or the wheel's copy."""
    here = Path(__file__).resolve().parent.parent / "templates"
    if (here / "envoy.yaml.j2").is_file():
        return here
    return Path(str(ilr.files("envoygen.templates")))


# Characters a YAML 1.1 parser (Envoy's, PyYAML) would fold or refuse inside a double-quoted
# scalar: C1 controls, NEL (U+0085), LS and PS. Written as JSON escapes, which YAML reads back exactly.
_YAML_UNSAFE = {c: f"\\u{c:04x}" for c in [*range(0x7F, 0xA0), 0x2028, 0x2029]}


# Lines of whitespace only (str.strip()'s whitespace: ``\s`` is the same set), with their ends:
# those at the start, then each run after a line break. A pattern that starts with a literal
# "\n" lets the regex engine skip to line breaks; "^\s*\n" with re.M tried every position
# (5.5 MB rendered at 1,000 hosts: ~0.03-0.05 s -> ~0.018 s, same text).
_LEADING_BLANK_LINES = re.compile(r"\s*\n")
_BLANK_LINE_RUNS = re.compile(r"\n\s*\n")


def drop_blank_lines(text: str) -> str:
    """``text`` without its lines of whitespace only (``re.sub(r"^\\s*\\n", "", text, flags=re.M)``)."""
    lead = _LEADING_BLANK_LINES.match(text)
    if lead is not None:
        text = text[lead.end():]
    return _BLANK_LINE_RUNS.sub("\n", text)


_JSON_STR: dict[str, str] = {}  # names, paths and hosts repeat across routes: each string is quoted once


def _json(value: Any) -> str:
    kind = type(value)
    if kind is int:
        return str(value)  # what json.dumps writes for an int, without its encoder set-up
    if kind is bool:
        return "true" if value else "false"
    if kind is str:
        quoted = _JSON_STR.get(value)
        if quoted is None:
            if len(_JSON_STR) > 200_000:
                _JSON_STR.clear()
            quoted = json.dumps(value, ensure_ascii=False)
            if not (value.isascii() and value.isprintable()):  # _YAML_UNSAFE is DEL and non-ASCII only
                quoted = quoted.translate(_YAML_UNSAFE)
            _JSON_STR[value] = quoted
        return quoted
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True).translate(_YAML_UNSAFE)


def _check_yaml_syntax(text: str) -> None:
    """Parse ``text`` without building anything: libyaml's raw_parse makes no Python
    object per event (four times faster than iterating ``yaml.parse``)."""
    raw = getattr(getattr(yaml, "_yaml", None), "CParser", None)
    if raw is not None and hasattr(raw, "raw_parse"):
        raw(text).raw_parse()
        return
    for _event in yaml.parse(text, Loader=yaml.SafeLoader):  # pragma: no cover - PyYAML without libyaml
        pass


def _shared_retry(vh: ir.VirtualHost) -> ir.RetryPolicy | None:
    """The retry policy every forwarding route of ``vh`` carries, stated once on the virtual
    host.  Envoy applies a virtual host's retry_policy to every route without one of its own
    (a route's replaces it whole); redirects and direct responses send nothing upstream, so
    they neither need nor can use it.  None when any forwarding route differs or has none."""
    policies = {r.action.retry for r in vh.routes if r.action.kind == "route"}
    return next(iter(policies)) if len(policies) == 1 else None


def _shared_config(vh: ir.VirtualHost) -> str:
    """The Istio config (VirtualService path) every route of ``vh`` comes from, stated once
    as the virtual host's metadata; routes from another VirtualService keep their own.
    Envoy ignores this metadata when routing; proxy-config and graph read a route's,
    then its virtual host's.  Empty when the routes come from more than one VirtualService."""
    names = {r.metadata_vs for r in vh.routes}
    return next(iter(names)) if len(names) == 1 else ""


def _by_locality(endpoints: tuple[ir.Endpoint, ...]) -> list[tuple[str, list[ir.Endpoint]]]:
    """Endpoints grouped by their exact locality label, groups in label order, endpoints in
    their order: Istio keys its locality groups by the label as written
    (buildLocalityLbEndpoints), where Jinja's ``groupby`` would merge labels that differ
    only in case."""
    groups: dict[str, list[ir.Endpoint]] = {}
    for ep in endpoints:
        groups.setdefault(ep.locality, []).append(ep)
    return sorted(groups.items(), key=lambda kv: kv[0])


def _plain_route(r: ir.Route, hoisted: ir.RetryPolicy | None, vh_config: str) -> bool:
    """The common route, which the virtual host's route loop (``route_config`` in macros.j2)
    writes itself, without calling the ``route`` macro or looking at the rest: no name, a
    case-sensitive path match alone, one cluster, no retry policy of its own (none, or the
    virtual host's), no rewrite, hash, mirror, header operation, fault, CORS or metadata of
    its own.  One Python call instead of a macro call and some fifty template lookups per
    route; tests/test_render_checks.py renders every sample without this test and compares."""
    a, m = r.action, r.match
    return (type(a) is ir.RouteAction and not r.name and r.metadata_vs == vh_config
            and m.path_kind != "safe_regex" and m.case_sensitive and not m.headers and not m.query_parameters
            and not a.weighted and (a.retry is None or hoisted is not None)
            and a.prefix_rewrite is None and not a.regex_rewrite and not a.host_rewrite
            and not a.hash_policies and not a.mirrors and r.headers.empty() and not r.fault and not r.cors)


# what a one-line comment cannot hold: C0 controls (\n, \r among them) and _YAML_UNSAFE's C1, NEL, LS, PS
_NOT_IN_COMMENT = {**{c: f"\\u{c:04x}" for c in range(0x20)}, **_YAML_UNSAFE}


def _comment(value: Any) -> str:
    """``value`` as text that stays inside a one-line YAML comment: line breaks (YAML's \\n,
    \\r, NEL, LS, PS) and other control characters are written as JSON escapes, so no input
    string can end the comment and add keys to a bootstrap or SDS file."""
    return str(value).translate(_NOT_IN_COMMENT)


def _indent(text: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    """Jinja's ``indent`` as one C-level replace: every line after the first gets the
    padding, blank ones too.  Jinja leaves blank lines unpadded; rendered YAML drops
    whitespace-only lines before it is returned (and the JSON path skips them), so the
    output is the same byte for byte, at a fraction of the per-line Python work."""
    pad = width if isinstance(width, str) else " " * width
    text = str(text).replace("\n", "\n" + pad)
    return pad + text if first else text


def _route_filters(rc: ir.RouteConfig) -> frozenset[str]:
    """Which of the optional HTTP filters (``fault``, ``cors``) a route of ``rc`` configures.
    Envoy's fault filter with an empty config injects nothing (no header-controlled faults)
    and its CORS filter acts only on a route's or virtual host's policy, so a connection
    manager whose routes configure neither behaves the same without them."""
    used = set()
    for vh in rc.virtual_hosts:
        for r in vh.routes:
            if r.fault:
                used.add("fault")
            if r.cors:
                used.add("cors")
    return frozenset(used)


def _duration(seconds: float) -> str:
    text = f"{float(seconds):.9f}".rstrip("0").rstrip(".")
    return f"{text}s"


class _TemplateCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between runs, as Python keeps .pyc files (compiling the
    packaged templates costs ~0.13 s a run): in ``$XDG_CACHE_HOME/envoygen`` (default
    ``~/.cache/envoygen``), a directory of the user's own with mode 0700; entries are
    keyed by template path and checked against the source's hash, so an edited
    template is compiled again.  A cache that cannot be used (no home, read-only or
    full file system, someone else's directory) is skipped, never an error;
    ``ENVOYGEN_TEMPLATE_CACHE=0`` turns it off.  Every template directory rendered from
    keeps entries of its own (a test suite's temporary ones too), so writing an entry
    also removes the oldest beyond ``MAX_ENTRIES``: the cache stays a few megabytes."""

    MAX_ENTRIES = 128  # the packaged templates take 6; their compiled code is ~10-75 KB each

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except (OSError, EOFError, ValueError, TypeError):
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
            self._prune()
        except OSError:
            pass

    def _prune(self) -> None:
        """Remove the least recently written entries beyond MAX_ENTRIES (only this cache's files)."""
        prefix, suffix = self.pattern.split("%s")
        entries = []
        with os.scandir(self.directory) as it:
            for e in it:
                if e.name.startswith(prefix) and e.name.endswith(suffix) and e.is_file(follow_symlinks=False):
                    entries.append((e.stat(follow_symlinks=False).st_mtime_ns, e.name))
        entries.sort()
        for _, name in entries[:max(0, len(entries) - self.MAX_ENTRIES)]:
            try:
                os.unlink(os.path.join(self.directory, name))
            except FileNotFoundError:
                pass  # another run removed it first


def _template_cache() -> jinja2.BytecodeCache | None:
    if os.environ.get("ENVOYGEN_TEMPLATE_CACHE", "1") == "0":
        return None
    try:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        where = os.path.join(base, "envoygen", f"templates-jinja{jinja2.__version__}")
        os.makedirs(where, mode=0o700, exist_ok=True)
        st = os.lstat(where)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            return None  # not a private directory of ours: do not load code from it
        return _TemplateCache(where)
    except (OSError, RuntimeError):
        return None


class Renderer:
    """Templates → text.  The IR decides *what*; the install directory only
    decides *where* the bundle's files are opened from at run time, so one IR
    renders for any install directory without translating again."""

    def __init__(self, user_templates: Path | None = None) -> None:
        paths = [str(packaged_templates())]
        if user_templates is not None:
            if not user_templates.is_dir():
                raise InputError(f"--templates {user_templates}: not a directory")
            paths.insert(0, str(user_templates))
        self.env = self._environment(jinja2.FileSystemLoader(paths))
        # the JSON templates: the packaged ones only (a user's may write YAML they do not rewrite)
        self._json_env: jinja2.Environment | None = None
        self._json_paths = None if user_templates is not None else paths
        self._install_dir = "/"
        self._check_syntax = user_templates is not None  # the packaged ones write YAML by construction
        self.unmatched_patches: list[ir.ConfigPatch] = []  # of the last bootstrap rendered

    def _environment(self, loader: jinja2.BaseLoader) -> jinja2.Environment:
        env = jinja2.Environment(
            loader=loader,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            autoescape=False,
            bytecode_cache=_template_cache(),
        )
        env.filters.update(j=_json, indent=_indent, dur=_duration, shared_retry=_shared_retry,
                           shared_config=_shared_config, route_filters=_route_filters,
                           by_locality=_by_locality, comment=_comment)
        env.tests["plain_route"] = _plain_route
        # imported macro files get no render context, so the filter reads the
        # install dir of the render under way
        env.filters["installed"] = lambda rel: posixpath.join(self._install_dir, rel)
        return env

    def _render(self, name: str, where: str, parse: bool = True, **ctx: Any) -> str:
        self._install_dir = where
        try:
            text = self.env.get_template(name).render(version=__version__, **ctx)
        except jinja2.TemplateSyntaxError as exc:
            raise InputError(f"EG0402 template {exc.filename or exc.name}:{exc.lineno}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise InputError(f"EG0402 template {name}: {exc}") from None
        if parse:
            # Macros leave blank lines behind; no rendered YAML has block scalars
            # (every string is JSON-quoted), so dropping them changes nothing.
            text = drop_blank_lines(text + "\n") or "\n"
            if self._check_syntax:
                try:
                    _check_yaml_syntax(text)
                except yaml.YAMLError as exc:
                    raise InputError(f"EG0402 template {name} rendered invalid YAML: {exc}") from None
        return text

    def bootstrap(self, b: ir.Bootstrap, install_dir: str, bootstrap_format: str = "yaml") -> str:
        if bootstrap_format == "json" and not b.patches:
            return self._bootstrap_json(b, install_dir)
        text = self._render("envoy.yaml.j2", install_dir, b=b)
        data = None
        self.unmatched_patches = []
        if b.patches:
            data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            internal = {b.stats_listener, b.readiness_listener, "prometheus_stats", "agent"}
            try:
                self.unmatched_patches = apply_patches(data, b.patches, internal)
            except ValueError as exc:
                raise InputError(f"EG0221 {exc}") from None
            head = text.split("\n", 1)[0] if text.startswith("#") else ""
            text = (head + "\n# EnvoyFilter patches applied.\n" if head else "") + yaml.safe_dump(
                data, sort_keys=False, allow_unicode=True, width=4096, default_flow_style=False)
        if bootstrap_format == "json":
            if data is None:
                data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        return text

    def _native_json(self, b: ir.Bootstrap, install_dir: str) -> str | None:
        """The packaged templates rewritten to write JSON (jsontemplates), rendered; None
        where they cannot be rewritten or a value is one yamljson would refuse."""
        if self._json_paths is None:
            return None
        if self._json_env is None:
            self._json_env = self._environment(jsonrender.JsonLoader(self._json_paths))
            self._json_env.filters.update(jsonrender.filters(_json, _duration))
        self._install_dir = install_dir
        try:
            text = self._json_env.get_template("envoy.yaml.j2").render(version=__version__, b=b)
        except jsontemplates.Refused:
            self._json_paths = None  # the templates do not change within a run
            return None
        except (yamljson.NotSubset, jinja2.TemplateError):
            return None  # the YAML way says what is wrong, or falls back itself
        return jsontemplates.finish(text) + "\n"

    def _bootstrap_json(self, b: ir.Bootstrap, install_dir: str) -> str:
        """JSON text from the templates rewritten to write JSON, or straight from the
        templates' YAML subset (yamljson: no YAML parser and no Python values; the values
        PyYAML would build), compact, keys in the templates' order.  Text outside the
        subset (a user's template) goes through the YAML parser and json.dumps (keys sorted)."""
        native = self._native_json(b, install_dir)
        if native is not None:
            return native
        text = self._render("envoy.yaml.j2", install_dir, parse=False, b=b)
        try:
            return yamljson.to_json(text) + "\n"
        except yamljson.NotSubset:
            text = self._render("envoy.yaml.j2", install_dir, b=b)
            data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        return json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"

    def sds(self, s: ir.Secret, install_dir: str) -> str:
        return self._render("sds.yaml.j2", install_dir, s=s)

    def dockerfile(self, b: ir.Bootstrap, install_dir: str, bootstrap_file: str) -> str:
        ports = sorted(set(b.bound_ports))
        return self._render(
            "Dockerfile.j2", install_dir, parse=False, install_dir=install_dir, bootstrap_file=bootstrap_file,
            ports=ports, readiness_port=b.readiness_port, admin_port=b.admin_port, envoy_version=ENVOY_VERSION,
        )
