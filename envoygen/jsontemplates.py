"""The packaged templates, made to write JSON (issue 14: ``--bootstrap-format json``
without reading the rendered YAML back).

The templates write a narrow YAML (yamljson's subset): one ``key: value`` or ``- item``
per line, nesting by indentation, flow collections on one line, every string through
``|j``.  Where the Jinja blocks (if, for, macro) enclose whole YAML collections, which
is how the packaged templates are written, the nesting is known from the source, so
each template line can be rewritten once into the JSON it stands for: a key as a JSON
string, a plain scalar or flow collection as its JSON value (PyYAML's reading of it,
as yamljson gives), ``{{ x | j }}`` as ``{{ x | jj }}`` and so on, brackets where
collections open and close.  Members and items end with a separator byte that becomes
a comma, or nothing before a closing bracket, once the text is rendered.

What cannot be rewritten so (a macro with Jinja tags inside its lines, a collection that
a conditional line would close) is kept: the macro is rendered as YAML and its text
read by yamljson, for that fragment only.  The JSON is the text yamljson.to_json
makes of the YAML render, byte for byte (tests/test_jsontemplates.py checks it on every
input of the tests and samples); where yamljson would refuse a value (a string with a
lone surrogate, a float PyYAML reads as text, a null), the filters here refuse it too
and the caller takes yamljson's way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Union

from .yamljson import _KEY


class Refused(ValueError):
    """A template line or block this rewrite does not handle."""


SEP = "\x01"  # ends a member or an item; never in rendered text (JSON escapes control characters)
_COMMENT = re.compile(r"\{#.*?#\}", re.S)
_TAG = re.compile(r"\s*\{%-?\s*(\w+)((?:(?!%\}).)*?)-?%\}\s*$")
_HOLE = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")
_PLACE = re.compile(r"zzhole(\d+)zz")
_CALL = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?)\(")
_IMPORT = re.compile(r'\s*import\s+"([^"]+)"\s+as\s+(\w+)\s*$')
_MACRO = re.compile(r"\s*(\w+)\((.*)\)\s*$")
_INDENT = re.compile(r"\s*\|\s*indent\([^()]*\)\s*$")


@dataclass
class Content:
    text: str


@dataclass
class Stmt:
    src: str


@dataclass
class Block:
    kw: str  # if, for
    heads: list[str] = field(default_factory=list)  # the opening tag, then each elif/else tag
    bodies: list[list[Any]] = field(default_factory=list)
    end: str = ""


@dataclass
class Macro:
    name: str
    params: str
    source: list[str]  # its lines as written, for the YAML copy
    body: list[Any] | None  # None: a line holds a tag among its text (kept as YAML)


Node = Union[Content, Stmt, Block, Macro]


def parse(source: str) -> list[Node]:
    """The template as a tree of lines and blocks (comments dropped)."""
    top: list[Node] = []
    stack: list[tuple[list[Node], Block | Macro | None]] = [(top, None)]
    lines = _COMMENT.sub("", source).split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        m = _TAG.match(line)
        body, owner = stack[-1]
        if m is None:
            if "{%" in line:
                raise Refused(f"a tag inside a line: {line.strip()}")
            if line.strip() and not line.lstrip().startswith("#"):
                body.append(Content(line))
            continue
        kw, rest = m.group(1), m.group(2)
        if kw == "macro":
            mm = _MACRO.match(rest)
            if mm is None or owner is not None:
                raise Refused(line)
            start = i - 1
            while i < len(lines) and not (_TAG.match(lines[i]) and _TAG.match(lines[i]).group(1) == "endmacro"):
                i += 1
            src = lines[start:i + 1]
            i += 1
            try:
                inner = parse("\n".join(src[1:-1]))
            except Refused:
                inner = None
            top.append(Macro(mm.group(1), mm.group(2), src, inner))
        elif kw in ("if", "for"):
            blk = Block(kw, [line.strip()], [[]])
            body.append(blk)
            stack.append((blk.bodies[0], blk))
        elif kw in ("elif", "else"):
            if not isinstance(owner, Block) or (kw == "elif" and owner.kw != "if"):
                raise Refused(line)
            owner.heads.append(line.strip())
            owner.bodies.append([])
            stack[-1] = (owner.bodies[-1], owner)
        elif kw in ("endif", "endfor"):
            if not isinstance(owner, Block) or kw != "end" + owner.kw:
                raise Refused(line)
            owner.end = line.strip()
            stack.pop()
        elif kw in ("set", "import"):
            body.append(Stmt(line.strip()))
        else:
            raise Refused(line)
    if len(stack) != 1:
        raise Refused("an unclosed block")
    return top


@dataclass
class Line:
    """A content line lexed: its column, whether it is an item (``- ``), and what it holds:
    a key with its value (None: a block collection follows), a value, or a macro's lines."""

    col: int
    dash: bool
    key: str | None = None
    value: str | None = None
    call: str | None = None  # a macro called alone on the line (without its indent filter)
    holes: list[str] = field(default_factory=list)


def lex(text: str) -> Line:
    holes: list[str] = []

    def hole(m: re.Match[str]) -> str:
        expr = m.group(1)
        if expr in ('"{"', '"}"'):
            return expr[1]
        holes.append(expr)
        return f"zzhole{len(holes) - 1}zz"

    t = _HOLE.sub(hole, text)
    s = t.lstrip(" ")
    line = Line(len(t) - len(s), s.startswith("- "), holes=holes)
    if line.dash:
        s = s[2:]
        if s.startswith("- "):
            raise Refused(f"nested items: {text.strip()}")
    whole = _PLACE.fullmatch(s)
    if whole and _CALL.match(holes[int(whole.group(1))]):
        line.call = _INDENT.sub("", holes[int(whole.group(1))])
        return line
    m = _KEY.match(s)
    if m is None:
        line.value = s
    else:
        line.key, line.value = m.group(1), m.group(2)
    return line


def macro_kind(m: Macro) -> str:
    """``members``, ``items`` or ``value``: what the macro's lines are at its first level."""
    for raw in m.source[1:-1]:
        s = re.sub(r"\{%.*?%\}", "", raw)  # a line's tags (a tag line leaves blanks)
        if not s.strip() or s.lstrip().startswith("#"):
            continue
        line = lex(s)
        return "items" if line.dash else "members" if line.key is not None or line.call else "value"
    return "members"


def kinds_of(source: str) -> dict[str, str]:
    """Each macro of a template file and what its lines are (``members``, ``items``, ``value``)."""
    try:
        return {n.name: macro_kind(n) for n in parse(source) if isinstance(n, Macro)}
    except Refused:
        return {}


def finish(text: str) -> str:
    """The rendered JSON template's text as JSON: separators to commas, or nothing before a
    closing bracket (and the rare line break that keeps a "{" off a "{{" dropped)."""
    if "\n" in text:
        text = text.replace("\n", "")
    return text.replace(SEP + "}", "}").replace(SEP + "]", "]").replace(SEP, ",")
