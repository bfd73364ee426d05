"""The rendered bootstrap's YAML → Python values, without a YAML parser.

The packaged templates write a narrow subset of YAML: block mappings and block
sequences, one ``key: value`` per line, every string either JSON-quoted (the ``j``
filter) or a plain word such as ``STATIC``, numbers, ``true``/``false`` and empty
``{}``/``[]``.  :func:`load` reads exactly that subset line by line and raises
:class:`NotSubset` on anything else (anchors, comments after a value, block
scalars, ``yes``/``no``, nulls, duplicate keys, user templates writing other
styles), so the caller falls back to the full YAML parser and the result is
always what PyYAML would build.  ``tests/test_yamljson.py`` compares both on
every golden bootstrap and on random documents in the templates' style.  Refused
for that reason: plain keys PyYAML reads as booleans or null (``on:``), escaped
surrogate pairs, characters PyYAML's reader does not allow, YAML's other line
breaks (CR, NEL, LS, PS), and ``-`` followed by a space as a value.  Each
distinct line is read once (names, hosts and paths repeat across routes).
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
# a plain word; "-" followed by a space or nothing is an item mark (PyYAML refuses it as a value)
_WORD = re.compile(r"(?!-(?: |$))[A-Za-z0-9_./-](?:[A-Za-z0-9_./@+=~, -]*[A-Za-z0-9_./@+=~-])?$")
# what PyYAML's reader refuses anywhere in a stream (yaml.reader.Reader.NON_PRINTABLE), split so
# that the common all-ASCII text needs one scan for control characters only
# ... and the line breaks YAML knows besides "\n" (\r, NEL, LS, PS), which this line reader does not
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
_NON_PRINTABLE = re.compile("[\x80-\x9f\ud800-\udfff\ufffe\uffff\u2028\u2029]")
_RESOLVER = yaml.resolver.Resolver()
_UNSET = object()
_STR_KEYS: dict[str, bool] = {}  # plain key -> PyYAML reads it as a string


def _plain_key(tok: str) -> str:
    """A plain (unquoted) mapping key, which PyYAML resolves as it resolves values: ``on``,
    ``yes``, ``null`` or ``true`` would become a boolean or None, so those are refused."""
    ok = _STR_KEYS.get(tok)
    if ok is None:
        if len(_STR_KEYS) > 10_000:  # a long-lived process: keep the cache bounded
            _STR_KEYS.clear()
        ok = _STR_KEYS[tok] = _RESOLVER.resolve(yaml.ScalarNode, tok, (True, False)) == "tag:yaml.org,2002:str"
    if not ok:
        raise NotSubset(tok)
    return tok


# a JSON escape of half a surrogate pair: JSON joins "\ud83d\ude00" into one character, PyYAML
# (YAML 1.1) keeps two lone surrogates; the templates write such characters as they are
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _quoted(tok: str) -> str:
    """A double-quoted scalar's value, where JSON and YAML read it alike, or NotSubset."""
    if "\\u" in tok and _SURROGATE_ESCAPE.search(tok):
        raise NotSubset(tok)
    try:
        value = json.loads(tok)
    except ValueError:
        raise NotSubset(tok) from None
    if type(value) is not str:
        raise NotSubset(tok)
    return value


def _decode(tok: str) -> Any:
    c = tok[0]
    if c == '"':
        return _quoted(tok)
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


_FTOK = re.compile(r' *(?:([{}\[\],:])|("(?:[^"\\]|\\.)*")|((?!-(?:[ ,\]}]|$))[^ ,{}\[\]:"#&*!|>\'%@`?][^,{}\[\]:#]*?)(?= *(?:[,{}\[\]:]|$))) *')


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
            k = _quoted(toks[i][1]) if toks[i][1][0] == '"' else _plain_key(toks[i][1])
            if k in obj or not isinstance(k, str):
                raise NotSubset(tok)
            obj[k], i = _flow_value(toks, i + 2, tok)
        return obj, i + 1
    raise NotSubset(tok)


# a flow collection's pieces that are already JSON, or become JSON by quoting a plain key
_FAST_FLOW = re.compile(r'([{}\[\]]|, |"[^"\\]*"|-?(?:0|[1-9][0-9]*)(?=[,}\]])|(?:true|false)(?=[,}\]]))'
                        r'|([A-Za-z_][A-Za-z0-9_]*): ')


def _as_json(tok: str) -> str | None:
    """The JSON text of ``tok`` without decoding it, in two common cases: a quoted string of
    printable ASCII without escapes (it is its own JSON), and a flow collection of plain
    keys, such strings, integers and booleans.  None when unsure (the full path decides).
    The result must be the canonical JSON of what it parses to, which rules out duplicate
    keys and anything PyYAML would read otherwise (``[a: 1]``, ``-0``)."""
    if not (tok.isascii() and tok.isprintable()):
        return None
    c = tok[0]
    if c == '"':
        inner = tok[1:-1]
        return tok if len(tok) >= 2 and tok[-1] == '"' and '"' not in inner and "\\" not in inner else None
    if c != "{" and c != "[":
        return None
    out, pos = [], 0
    for m in _FAST_FLOW.finditer(tok):
        if m.start() != pos:
            return None
        pos = m.end()
        piece, key = m.groups()
        if key and not _STR_KEYS.get(key, False):
            try:
                _plain_key(key)
            except NotSubset:
                return None
        out.append(('"' + key + '":') if key else ("," if piece == ", " else piece))
    if pos != len(tok):
        return None
    text = "".join(out)
    try:
        canonical = json.dumps(json.loads(text), separators=(",", ":"))
    except ValueError:
        return None
    return text if canonical == text else None


class _Tokens:
    """JSON text of each distinct scalar and flow collection, and of each key with its
    colon, decoded once (names, hosts and paths repeat across routes)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.keys: dict[str, str] = {}

    def value(self, tok: str) -> str:
        text = self.values.get(tok)
        if text is None:
            text = _as_json(tok) or json.dumps(_decode(tok), separators=(",", ":"))
            self.values[tok] = text
        return text

    def key(self, tok: str) -> str:
        text = self.keys.get(tok)
        if text is None:
            if tok[0] == '"':
                key = _quoted(tok)
            else:
                key = _plain_key(tok)
            text = self.keys[tok] = json.dumps(key) + ":"
        return text


_COMMA = (",", "")  # indexed by "the collection is still empty"


def to_json(text: str) -> str:
    """The single document ``text`` as compact JSON text (keys in the order written), with
    the values PyYAML's safe loader would build, or NotSubset.  No Python value is built:
    quoted scalars are already JSON, and each line adds its piece of text."""
    if "\t" in text:
        raise NotSubset("a tab")  # the templates write none (|j escapes them); YAML may mean indentation
    if not text.isascii() and _NON_PRINTABLE.search(text) or _CONTROL.search(text):
        raise NotSubset("a character YAML does not allow in a stream")  # PyYAML's reader refuses it
    return _walk(text)


_BLANK = (0, 0, "", "", None, "", "")  # what _lex gives a blank or comment line: skipped
_Lexed = tuple[int, int, str, str, "str | None", str, str]


def _lex(line: str, tokens: _Tokens) -> _Lexed:
    """One line's pieces, independent of what comes before it: (column, number of leading
    ``- `` item marks, kind, JSON, JSON); kind ``v``: a scalar item (its value's JSON),
    ``k``: a key (its JSON with the colon) and its value's JSON, or None when the value is
    a block collection on the next lines; then the text a ``key: value`` line adds to the
    first and to a later place of its mapping.  A line that no context could accept raises."""
    s = line.lstrip(" ")
    if not s or s[0] == "#":
        return _BLANK
    col = len(line) - len(s)
    if s[0] in "-." and (s.startswith("---") or s.startswith("...")):
        raise NotSubset(line)
    ndash = 0
    while s[:2] == "- " or s == "-":
        s = s[2:]
        if not s or s[0] == " ":
            raise NotSubset(line)
        ndash += 1
    m = _KEY.match(s)
    if m is None:
        if not ndash:
            raise NotSubset(line)
        return col, ndash, "v", tokens.value(s), None, "", ""
    k, v = m.groups()
    if v == "":
        raise NotSubset(line)  # "key: " with nothing: null
    key = tokens.keys.get(k) or tokens.key(k)
    value = None if v is None else tokens.value(v)
    piece = key + (value or "")
    return col, ndash, "k", key, value, piece, "," + piece


def _place(line: str, lx: _Lexed, col: int, top: list[Any], stack: list[list[Any]], w: Any) -> int:
    """Write one line at column ``col`` into ``top``, the open collection there: its item
    marks open the nested lists and mappings they start; then its scalar item or key.
    Returns the column of a ``key:`` whose block value follows, else -1."""
    _, ndash, kind, first, second, _, _ = lx
    done = 0  # item marks consumed
    while True:
        if top[1]:
            if done == ndash:
                raise NotSubset(line)
            done += 1
            col += 2
            w(_COMMA[top[3]])
            top[3] = False
            if done == ndash and kind == "v":
                w(first)
                return -1
            is_list = done < ndash
            w("[" if is_list else "{")
            top = [col, is_list, None if is_list else set(), True]
            stack.append(top)
            continue
        if done < ndash or kind != "k":
            raise NotSubset(line)
        if first in top[2]:
            raise NotSubset(line)  # a duplicate key: PyYAML keeps the last, Envoy may refuse
        top[2].add(first)
        w(_COMMA[top[3]])
        top[3] = False
        w(first)
        if second is None:
            return col
        w(second)
        return -1


_NO_TOP = [-1, True, None, True]  # no collection open: only _walk's general path reads it


def _walk(text: str) -> str:
    """to_json's line walk: each distinct line is lexed once (most repeat: ``timeout: 0s``,
    cluster and host names), then one pass keeps a stack of the open collections."""
    out: list[str] = []
    w = out.append
    tokens = _Tokens()
    lexed: dict[str, _Lexed] = {}
    # open collections, innermost last: [column, is a list, keys seen (a mapping's), still empty]
    stack: list[list[Any]] = []
    top: list[Any] = _NO_TOP  # stack[-1] once started
    pending = -1  # column of a "key:" whose value (a block collection) starts on the next line
    started = False
    for line in text.split("\n"):
        lx = lexed.get(line)
        if lx is None:
            lx = lexed[line] = _lex(line, tokens)
        if lx is _BLANK:
            continue
        col, ndash, kind, first, second, piece, later = lx
        if pending >= 0:
            if col > pending and not ndash:  # a block mapping, the value of the "key:" above
                pending = -1
                top = [col, False, set(), True]
                stack.append(top)
                w("{")
        elif col < top[0] or (top[1] and col == top[0] and not ndash):  # back to an enclosing mapping
            while stack and stack[-1][0] > col:
                w("]" if stack.pop()[1] else "}")
            if stack and stack[-1][1] and stack[-1][0] == col and not ndash:  # after its "key:\n- item" list
                stack.pop()
                w("]")
            top = stack[-1] if stack else _NO_TOP
        if col == top[0] and not ndash and pending < 0 and not top[1]:  # the next key of the open mapping
            if first in top[2]:
                raise NotSubset(line)  # a duplicate key: PyYAML keeps the last, Envoy may refuse
            top[2].add(first)
            if top[3]:
                top[3] = False
                w(piece)
            else:
                w(later)
            if second is None:
                pending = col
            continue
        while stack and stack[-1][0] > col:
            w("]" if stack.pop()[1] else "}")
        if pending >= 0 or not started:
            if started and not (col > pending or (col == pending and ndash)):
                raise NotSubset(line)  # an empty value is null
            pending, started = -1, True
            w("[" if ndash else "{")
            stack.append([col, bool(ndash), None if ndash else set(), True])
        elif not stack:
            raise NotSubset(line)
        top = stack[-1]
        if top[1] and top[0] == col and not ndash:  # a mapping's key after its "key:\n- item" list
            stack.pop()
            w("]")
            if not stack:
                raise NotSubset(line)
            top = stack[-1]
        if top[0] != col:
            raise NotSubset(line)
        pending = _place(line, lx, col, top, stack, w)
        top = stack[-1]
    if pending >= 0 or not started:
        raise NotSubset("end of text")
    while stack:
        w("]" if stack.pop()[1] else "}")
    return "".join(out)


def load(text: str) -> Any:
    """The single document ``text`` as PyYAML's safe loader would build it, or NotSubset."""
    return json.loads(to_json(text))


def read_bootstrap(text: str, json_text: bool = False) -> Any:
    """A rendered bootstrap's values, for the commands that read a bundle (proxy-config,
    graph, diff, run --resolve): JSON text by :func:`json.loads`; YAML by :func:`load` (the
    templates' subset, ~5x faster than PyYAML's C loader, which still builds every value in
    Python), or by PyYAML's safe loader where the text leaves the subset (a user's
    templates, a bootstrap that EnvoyFilter patches made PyYAML write).  Raises
    ValueError or yaml.YAMLError on text neither reads."""
    if json_text:
        return json.loads(text)
    try:
        return load(text)
    except NotSubset:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
