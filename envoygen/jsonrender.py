"""The JSON templates' side of the renderer: their filters, and the loader that rewrites
the templates as it loads them (jsontemplates, jsonemit)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2

from . import jsonemit, jsontemplates, yamljson

# The JSON templates' filters (jsontemplates): each gives the JSON that yamljson.to_json makes
# of what its YAML counterpart writes, by the same code, so the two ways agree byte for byte.
_TOKENS = yamljson._Tokens()


def _token(text: str) -> str:
    out = _TOKENS.values.get(text)
    if out is None:
        if "\t" in text or not text.isascii() and yamljson._NON_PRINTABLE.search(text) or yamljson._CONTROL.search(text):
            raise yamljson.NotSubset(text)  # to_json refuses the whole text for it
        if len(_TOKENS.values) > 200_000:
            _TOKENS.values.clear()
        out = _TOKENS.value(text)
    return out


def _json_key(text: str) -> str:
    out = _TOKENS.keys.get(text)
    if out is None:
        _token(text)  # the same refusals
        out = _TOKENS.key(text)
    return out[:-1]


def _yaml_read(bracket: str) -> Any:
    """A YAML macro's text (members or items at column 0) as JSON members or items, each
    followed by the separator: for the macros kept as YAML (jsontemplates)."""
    def read(text: str) -> str:
        if not text.strip():
            return ""
        out = yamljson.to_json(text)
        if out[0] != bracket:
            raise yamljson.NotSubset(text[:80])
        return out[1:-1] + jsontemplates.SEP if len(out) > 2 else ""
    return read


def filters(j: Callable[[Any], str], dur: Callable[[float], str]) -> dict[str, Callable[..., str]]:
    """The JSON templates' filters, given the YAML templates' ``j`` and ``dur``."""
    strings: dict[str, str] = {}  # strings and durations repeat across routes: each is read once
    durations: dict[float, str] = {}

    def jj(value: Any) -> str:  # |j in JSON
        kind = type(value)
        if kind is int:
            return str(value)
        if kind is bool:
            return "true" if value else "false"
        if kind is str:
            out = strings.get(value)
            if out is None:
                # printable ASCII without quote or backslash: j writes it quoted as it is, and
                # yamljson keeps that text (its _as_json); anything else takes their own way
                if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
                    out = strings[value] = '"' + value + '"'
                else:
                    out = strings[value] = _token(j(value))
            return out
        return _token(j(value))

    def jdur(seconds: float) -> str:  # |dur in JSON
        out = durations.get(seconds)
        if out is None:
            out = durations[seconds] = _token(dur(seconds))
        return out

    return {
        "jj": jj,
        "jdur": jdur,
        "jplain": lambda value: _token(str(value)),
        "jkey": lambda value: _json_key(str(value)),
        "jkeyq": lambda value: _json_key(j(value)),
        "yjm": _yaml_read("{"),
        "yji": _yaml_read("["),
        "yjv": lambda text: _token(str(text).strip()),
    }


class JsonLoader(jinja2.FileSystemLoader):
    """The templates rewritten to write JSON (jsontemplates.transform), as they are loaded."""

    def __init__(self, paths: list[str]) -> None:
        super().__init__(paths)
        self._sources: dict[str, str] | None = None
        self._rewritten: dict[str, str] | None = None
        self._salt: str | None = None

    def _all_sources(self, environment: jinja2.Environment) -> dict[str, str]:
        """Every template as written, read once."""
        if self._sources is None:
            self._sources = {name: super(JsonLoader, self).get_source(environment, name)[0]
                             for name in self.list_templates() if name.endswith(".j2")}
        return self._sources

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        source, filename, uptodate = super().get_source(environment, template)
        return self._transform(environment, template, source), filename + "#json", uptodate

    def _transform(self, environment: jinja2.Environment, template: str, source: str) -> str:
        if self._rewritten is None:  # all at once: a macro's kind decides how its callers are rewritten
            self._rewritten = jsonemit.transform_all(self._all_sources(environment))
        if template not in self._rewritten:
            raise jsontemplates.Refused(f"{template} cannot be rewritten to write JSON")
        return self._rewritten[template]

    def load(self, environment: jinja2.Environment, name: str,
             globals: Any = None) -> jinja2.Template:  # noqa: A002 - jinja2's signature
        """As jinja2's, with the bytecode cache keyed by the templates as written (all of them,
        and the rewrite's own code), so that a cached run does not rewrite them (~40 ms)."""
        source, filename, uptodate = super().get_source(environment, name)
        bcc = environment.bytecode_cache
        bucket = None
        if bcc is not None:
            if self._salt is None:  # holds every template's text: ``source`` among them
                self._salt = "\0".join([*(Path(m.__file__).read_text() for m in (jsontemplates, jsonemit)),
                                        *self._all_sources(environment).values()])
            bucket = bcc.get_bucket(environment, name, filename + "#json", self._salt)
        code = bucket.code if bucket is not None else None
        if code is None:
            code = environment.compile(self._transform(environment, name, source), name, filename + "#json")
            if bcc is not None and bucket is not None:
                bucket.code = code
                bcc.set_bucket(bucket)
        return environment.template_class.from_code(environment, code, globals or {}, uptodate)


