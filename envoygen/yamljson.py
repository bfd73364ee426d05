"""The rendered bootstrap's YAML → Python values, without a YAML parser.

The packaged templates write a narrow subset of YAML: block mappings and block
sequences, one ``key: value`` per line, every string either JSON-quoted (the ``j``
filter) or a plain word such as ``STATIC``, numbers, ``true``/``false`` and empty
``{}``/``[]``.  :func:`load` reads exactly that subset line by line and raises
:class:`NotSubset` on anything else (anchors, comments after a value, block
scalars, ``yes``/``no``, nulls, duplicate keys, user templates writing other
styles), so the caller falls back to the full YAML parser and the result is
always what PyYAML would build.  ``tests/test_yamljson.py`` compares both on
every golden bootstrap.  Each distinct scalar is decoded once (names, hosts and
paths repeat across routes).
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml


class NotSubset(ValueError):
    """The text uses YAML outside the subset :func:`load` reads."""


_KEY = re.compile(r'([A-Za-z_][A-Za-z0-9_.\-/@]*|"(?:[^"\\]|\\.)*"):(?: (.*))?$')
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+$")
_WORD = re.compile(r"[A-Za-z0-9_./-](?:[A-Za-z0-9_./@+=~, -]*[A-Za-z0-9_./@+=~-])?$")
_RESOLVER = yaml.resolver.Resolver()
_UNSET = object()


def _decode(tok: str) -> Any:
    c = tok[0]
    if c == '"':
        try:
            value = json.loads(tok)
        except ValueError:
            raise NotSubset(tok) from None
        if type(value) is not str:
            raise NotSubset(tok)
        return value
    if c == "{" or c == "[":
        return _flow(tok)
    if not _WORD.match(tok):
        raise NotSubset(tok)
    tag = _RESOLVER.resolve(yaml.ScalarNode, tok, (True, False))  # PyYAML's own rule for a plain scalar
    if tag == "tag:yaml.org,2002:str":
        return tok
    if tag == "tag:yaml.org,2002:int" and _INT.match(tok):
        return int(tok)
    if tag == "tag:yaml.org,2002:float" and _FLOAT.match(tok):
        return float(tok)
    if tag == "tag:yaml.org,2002:bool" and tok in ("true", "false"):
        return tok == "true"
    raise NotSubset(tok)


_FTOK = re.compile(r' *(?:([{}\[\],:])|("(?:[^"\\]|\\.)*")|([^ ,{}\[\]:"#&*!|>\'%@`?][^,{}\[\]:#]*?)(?= *(?:[,{}\[\]:]|$))) *')


def _flow(tok: str) -> Any:
    """A flow collection ``{a: 1, b: [x, "y"]}`` (a mapping's ``:`` always followed by a space)."""
    toks: list[tuple[str, str]] = []
    pos = 0
    while pos < len(tok):
        m = _FTOK.match(tok, pos)
        if m is None or m.end() == pos:
            raise NotSubset(tok)
        if m.group(1):
            if m.group(1) == ":" and not tok.startswith(": ", m.start(1)):
                raise NotSubset(tok)
            toks.append(("p", m.group(1)))
        else:
            toks.append(("s", m.group(2) or m.group(3)))
        pos = m.end()
    value, i = _flow_value(toks, 0, tok)
    if i != len(toks):
        raise NotSubset(tok)
    return value


def _flow_value(toks: list[tuple[str, str]], i: int, tok: str) -> tuple[Any, int]:
    if i >= len(toks):
        raise NotSubset(tok)
    kind, t = toks[i]
    if kind == "s":
        return _decode(t), i + 1
    if t == "[":
        out: list[Any] = []
        i += 1
        while toks[i:i + 1] != [("p", "]")]:
            if out:
                if toks[i:i + 1] != [("p", ",")]:
                    raise NotSubset(tok)
                i += 1
            v, i = _flow_value(toks, i, tok)
            out.append(v)
        return out, i + 1
    if t == "{":
        obj: dict[str, Any] = {}
        i += 1
        while toks[i:i + 1] != [("p", "}")]:
            if obj:
                if toks[i:i + 1] != [("p", ",")]:
                    raise NotSubset(tok)
                i += 1
            if i + 1 >= len(toks) or toks[i][0] != "s" or toks[i + 1] != ("p", ":"):
                raise NotSubset(tok)
            k = json.loads(toks[i][1]) if toks[i][1][0] == '"' else toks[i][1]
            if k in obj or not isinstance(k, str):
                raise NotSubset(tok)
            obj[k], i = _flow_value(toks, i + 2, tok)
        return obj, i + 1
    raise NotSubset(tok)


class _Reader:
    def __init__(self, shared: bool) -> None:
        self.cache: dict[str, Any] = {}
        self.shared = shared

    def scalar(self, tok: str) -> Any:
        value = self.cache.get(tok, _UNSET)
        if value is _UNSET:
            value = self.cache[tok] = _decode(tok)
        elif not self.shared and (type(value) is dict or type(value) is list):
            return _decode(tok)  # collections are fresh each time (a caller may change one)
        return value

    def key(self, tok: str) -> str:
        return json.loads(tok) if tok[0] == '"' else tok


def _put(r: _Reader, top: dict, s: str, col: int, line: str) -> tuple[dict, str, int] | None:
    """``key: value`` into ``top``; for ``key:`` the pending (mapping, key, column)."""
    m = _KEY.match(s)
    if m is None:
        raise NotSubset(line)
    k = r.key(m.group(1))
    if k in top:
        raise NotSubset(line)  # PyYAML keeps the last, Envoy may refuse: let the parser decide
    v = m.group(2)
    if v == "":
        raise NotSubset(line)
    if v is None:
        top[k] = None
        return (top, k, col)
    top[k] = r.scalar(v)
    return None


def load(text: str, shared: bool = False) -> Any:
    """The single document ``text`` as PyYAML's safe loader would build it, or NotSubset.

    ``shared``: equal flow collections (``{address: "10.0.0.2", port_value: 80}``) are one
    object, parsed once; for a caller that only reads the result (writes it as JSON)."""
    r = _Reader(shared)
    stack: list[tuple[int, Any]] = []  # (column, dict or list), innermost last
    pending: tuple[dict, str, int] | None = None  # a "key:" whose value starts on the next line
    root: Any = None
    for line in text.split("\n"):
        s = line.lstrip(" ")
        if not s or s[0] == "#":
            continue
        col = len(line) - len(s)
        if "\t" in line[:col + 1] or s.startswith("---") or s.startswith("..."):
            raise NotSubset(line)
        while stack and stack[-1][0] > col:
            stack.pop()
        dash = s[:2] == "- " or s == "-"
        if pending is not None:
            parent, k, pcol = pending
            pending = None
            if col > pcol or (col == pcol and dash):
                node: Any = [] if dash else {}
                parent[k] = node
                stack.append((col, node))
            else:
                raise NotSubset(line)  # an empty value is null
        elif root is None:
            root = [] if dash else {}
            stack.append((col, root))
        elif not stack:
            raise NotSubset(line)
        top_col, top = stack[-1]
        if type(top) is list and top_col == col and not dash:
            stack.pop()
            if not stack:
                raise NotSubset(line)
            top_col, top = stack[-1]
        if top_col != col:
            raise NotSubset(line)
        while True:
            if type(top) is list:
                if not dash:
                    raise NotSubset(line)
                s = s[2:]
                col += 2
                if not s or s[0] == " ":
                    raise NotSubset(line)
                dash = s[:2] == "- " or s == "-"
                if dash:
                    node = []
                    top.append(node)
                    stack.append((col, node))
                    top = node
                    continue
                m = _KEY.match(s)
                if m is None:
                    top.append(r.scalar(s))
                    break
                node = {}
                top.append(node)
                stack.append((col, node))
                top = node
                continue
            if dash:
                raise NotSubset(line)
            pending = _put(r, top, s, col, line)
            break
    if pending is not None or root is None:
        raise NotSubset("end of text")
    return root
