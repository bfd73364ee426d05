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


class _Tokens:
    """JSON text of each distinct scalar and flow collection, and of each key with its
    colon, decoded once (names, hosts and paths repeat across routes)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.keys: dict[str, str] = {}

    def value(self, tok: str) -> str:
        text = self.values.get(tok)
        if text is None:
            text = self.values[tok] = json.dumps(_decode(tok), separators=(",", ":"))
        return text

    def key(self, tok: str) -> str:
        text = self.keys.get(tok)
        if text is None:
            if tok[0] == '"':
                try:
                    key = json.loads(tok)
                except ValueError:
                    raise NotSubset(tok) from None
            else:
                key = tok
            text = self.keys[tok] = json.dumps(key) + ":"
        return text


_COMMA = (",", "")  # indexed by "the collection is still empty"


def to_json(text: str) -> str:
    """The single document ``text`` as compact JSON text (keys in the order written), with
    the values PyYAML's safe loader would build, or NotSubset.  No Python value is built:
    quoted scalars are already JSON, and each line adds its piece of text."""
    if "\t" in text:
        raise NotSubset("a tab")  # the templates write none (|j escapes them); YAML may mean indentation
    return _walk(text)


def _walk(text: str) -> str:
    """to_json's line walk (one pass, a stack of the open collections)."""
    out: list[str] = []
    w = out.append
    tokens = _Tokens()
    keys, values = tokens.keys, tokens.values
    # open collections, innermost last: [column, is a list, keys seen (a mapping's), still empty]
    stack: list[list[Any]] = []
    pending = -1  # column of a "key:" whose value (a block collection) starts on the next line
    started = False
    for line in text.split("\n"):
        s = line.lstrip(" ")
        if not s or s[0] == "#":
            continue
        col = len(line) - len(s)
        if s[0] in "-." and (s.startswith("---") or s.startswith("...")):
            raise NotSubset(line)
        while stack and stack[-1][0] > col:
            w("]" if stack.pop()[1] else "}")
        dash = s[:2] == "- " or s == "-"
        if pending >= 0 or not started:
            if started and not (col > pending or (col == pending and dash)):
                raise NotSubset(line)  # an empty value is null
            pending, started = -1, True
            w("[" if dash else "{")
            stack.append([col, dash, None if dash else set(), True])
        elif not stack:
            raise NotSubset(line)
        top = stack[-1]
        if top[1] and top[0] == col and not dash:  # a mapping's key after its "key:\n- item" list
            stack.pop()
            w("]")
            if not stack:
                raise NotSubset(line)
            top = stack[-1]
        if top[0] != col:
            raise NotSubset(line)
        while True:
            if top[1]:
                if not dash:
                    raise NotSubset(line)
                s = s[2:]
                col += 2
                if not s or s[0] == " ":
                    raise NotSubset(line)
                w(_COMMA[top[3]])
                top[3] = False
                dash = s[:2] == "- " or s == "-"
                if not dash and _KEY.match(s) is None:
                    w(tokens.value(s))
                    break
                w("[" if dash else "{")
                top = [col, dash, None if dash else set(), True]
                stack.append(top)
                continue
            if dash:
                raise NotSubset(line)
            # key: value (inline: this runs for most lines)
            m = _KEY.match(s)
            if m is None:
                raise NotSubset(line)
            k, v = m.groups()
            k = keys.get(k) or tokens.key(k)
            if k in top[2] or v == "":
                raise NotSubset(line)  # a duplicate key: PyYAML keeps the last, Envoy may refuse
            top[2].add(k)
            w(_COMMA[top[3]])
            top[3] = False
            w(k)
            if v is None:
                pending = col
            else:
                w(values.get(v) or tokens.value(v))
            break
    if pending >= 0 or not started:
        raise NotSubset("end of text")
    while stack:
        w("]" if stack.pop()[1] else "}")
    return "".join(out)


def load(text: str) -> Any:
    """The single document ``text`` as PyYAML's safe loader would build it, or NotSubset."""
    return json.loads(to_json(text))
