"""The rewrite of jsontemplates: a template's lines, with the YAML collections they open
and close, as a template that writes JSON (see jsontemplates for the rules)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .jsontemplates import (_CALL, _IMPORT, _PLACE, _TAG, SEP, Block, Content, Line, Macro, Node, Refused, Stmt,
                            kinds_of, lex, parse)
from .yamljson import NotSubset, _decode, _flow, _plain_key, _quoted


@dataclass
class Frame:
    col: int
    is_list: bool
    owner: int


_J = re.compile(r"\|\s*j\s*$")
_DUR = re.compile(r"\|\s*dur\s*$")


def _key_expr(expr: str) -> str:
    """A hole in a key's place: its text as a JSON string (``|j``'s quoted, or a plain word's)."""
    return _J.sub("| jkeyq", expr) if _J.search(expr) else f"({expr}) | jkey"


# "{" as a constant Jinja folds into the text when it compiles: a literal "{" could run into the
# "{{" or "{%" written after it
_OPEN = '{{ "{" }}'
_END = Line(-1, False)  # the end of the enclosing block: every frame it owns closes


class Emitter:
    """One macro's (or the template body's) JSON text, line by line, with the open YAML
    collections of the source as a stack; each collection closes in the block that opened it."""

    def __init__(self, kinds: dict[str, str]) -> None:
        self.kinds = kinds  # macro name as called (``m.hcm``, ``admin_gate``) -> kind
        self.out: list[str] = []
        self.stack: list[Frame] = []
        self.blocks = 0

    # -- what may come next
    def first(self, nodes: list[Node], follow: list[Line]) -> list[Line]:
        for i, n in enumerate(nodes):
            if isinstance(n, Content):
                return [lex(n.text)]
            if isinstance(n, Block):
                after = self.first(nodes[i + 1:], follow)
                out = []
                for b in n.bodies:
                    out += self.first(b, after)
                if n.kw == "for" or _TAG.match(n.heads[-1]).group(1) != "else":  # type: ignore[union-attr]
                    out += after
                return out
        return follow

    def _is_item(self, line: Line) -> bool:
        """The line starts a list item: ``- ...``, or a macro whose lines are items."""
        return line.dash or (line.call is not None and self._kind(line.call) == "items")

    def _closes(self, line: Line) -> int:
        if line is _END:
            return len(self.stack)
        dash = self._is_item(line)
        k = 0
        for f in reversed(self.stack):
            if f.col > line.col or (f.is_list and f.col == line.col and not dash):
                k += 1
            else:
                break
        return k

    def close(self, n: int, owner: int) -> None:
        for _ in range(n):
            f = self.stack[-1]
            if f.owner != owner:
                raise Refused("a collection that a line inside a conditional block would close")
            self.stack.pop()
            self.out.append(("]" if f.is_list else "}") + (SEP if self.stack else ""))

    def _kind(self, call: str) -> str:
        name = _CALL.match(call).group(1)  # type: ignore[union-attr]
        kind = self.kinds.get(name)
        if kind is None:
            raise Refused(f"a call of {name}, not a known macro")
        return kind

    # -- blocks
    def block(self, nodes: list[Node], follow: list[Line], owner: int, value: bool = False) -> None:
        for i, n in enumerate(nodes):
            if isinstance(n, Stmt):
                self.out.append(n.src)
            elif isinstance(n, Content):
                if value:
                    self.out.append(self.value(lex(n.text)))
                else:
                    self.content(lex(n.text), nodes[i + 1:], follow, owner)
            elif isinstance(n, Block):
                after = self.first(nodes[i + 1:], follow)
                if not value:
                    nxt = self.first([n], after)
                    owned = len([f for f in self.stack if f.owner == owner])
                    self.close(min(min(self._closes(x) for x in nxt), owned), owner)
                if n.kw == "for" and (len(n.bodies) > 1 or value):
                    raise Refused("a loop with an else branch, or in a value")
                depth = len(self.stack)
                inner_follow = (self.first(n.bodies[0], after) + after) if n.kw == "for" else after
                for head, body in zip(n.heads, n.bodies):
                    self.out.append(head)
                    self.blocks += 1
                    mine = self.blocks
                    self.block(body, inner_follow, mine, value)
                    self.close(len(self.stack) - depth, mine)
                self.out.append(n.end)
            else:
                raise Refused("a macro inside a macro")

    # -- lines
    def content(self, line: Line, rest: list[Node], follow: list[Line], owner: int) -> None:
        try:
            self.close(self._closes(line), owner)
        except Refused as exc:
            raise Refused(f"{exc}: {line}") from None
        top = self.stack[-1] if self.stack else None
        kind = self._kind(line.call) if line.call is not None else None
        if line.dash or kind == "items":
            if top is None or not top.is_list or top.col != line.col:
                raise Refused(f"an item outside a list at column {line.col}")
            if kind == "items":
                self.out.append(f"{{{{ {line.call} }}}}")
                return
            col = line.col + 2
            if line.key is not None or kind == "members":
                self.stack.append(Frame(col, False, owner))
                self.out.append(_OPEN)
            elif kind == "value":
                self.out.append(f"{{{{ {line.call} }}}}{SEP}")
                return
            else:
                self.out.append(self.value(line) + SEP)
                return
        else:
            col = line.col
            if top is None or top.is_list or top.col != col or (line.key is None and kind != "members"):
                raise Refused(f"a line that no open mapping at column {col} takes")
        if kind == "members":
            self.out.append(f"{{{{ {line.call} }}}}")
            return
        self.member(line, col, rest, follow, owner)

    def member(self, line: Line, col: int, rest: list[Node], follow: list[Line], owner: int) -> None:
        key = self.key(line)
        if line.value is not None:
            self.out.append(key + self.value(line) + SEP)
            return
        # the lines that may come next and would be its value; a path with none of them (an
        # empty loop) gives an empty collection, where the YAML would hold a null
        kids = {(k.col, self._is_item(k)) for k in self.first(rest, follow) if k is not _END}
        shapes = {(kcol, is_list) for kcol, is_list in kids if kcol > col or (kcol == col and is_list)}
        if len(shapes) != 1:
            raise Refused(f"the value of {line.key} takes {len(shapes)} shapes")
        kcol, is_list = shapes.pop()
        self.stack.append(Frame(kcol, is_list, owner))
        self.out.append(key + ("[" if is_list else _OPEN))

    def key(self, line: Line) -> str:
        k = line.key
        assert k is not None
        m = _PLACE.fullmatch(k)
        if m is not None:
            return "{{ " + _key_expr(line.holes[int(m.group(1))]) + " }}:"
        if "zzhole" in k:
            raise Refused(f"a key with an expression inside: {k}")
        try:
            return json.dumps(_quoted(k) if k[0] == '"' else _plain_key(k)) + ":"
        except NotSubset as exc:
            raise Refused(f"a key yamljson refuses: {k}") from exc

    def value(self, line: Line) -> str:
        v = line.value
        if v is None:
            raise Refused("a value missing")
        m = _PLACE.fullmatch(v)
        if m is not None:
            return "{{ " + self.expr(line.holes[int(m.group(1))]) + " }}"
        try:
            if v[0] in "{[":
                text = json.dumps(_flow(v), separators=(",", ":"))
            elif "zzhole" in v:
                raise Refused(f"an expression inside a scalar: {v}")
            else:
                text = json.dumps(_decode(v), separators=(",", ":"))
        except NotSubset as exc:
            raise Refused(f"a value yamljson refuses: {v}") from exc
        for i, expr in enumerate(line.holes):
            place = f'"zzhole{i}zz"'
            if text.count(place) != 1:
                raise Refused(f"an expression inside a scalar: {v}")
            sub = _key_expr(expr) if text.count(place + ":") else self.expr(expr)
            text = text.replace(place, "\n{{ " + sub + " }}")  # "\n": never "{{{"
        return text

    def expr(self, expr: str) -> str:
        if _CALL.match(expr) and _CALL.match(expr).group(1) in self.kinds:  # type: ignore[union-attr]
            if self._kind(expr) != "value":
                raise Refused(f"{expr} in a value")
            return expr
        if _J.search(expr):
            return _J.sub("| jj", expr)
        if _DUR.search(expr):
            return _DUR.sub("| jdur", expr)
        if expr.startswith('"'):
            raise Refused(f"a literal in an expression: {expr}")
        return f"({expr}) | jplain"


def _callable(nodes: list[Node], local: dict[str, str], files: dict[str, dict[str, str]]) -> tuple[dict[str, str], dict[str, str]]:
    """(callable name -> kind, import alias -> file) of one template."""
    kinds = dict(local)
    aliases = {}
    for n in nodes:
        m = _IMPORT.match(n.src[2:-2].strip("-").strip()) if isinstance(n, Stmt) else None
        if m is not None:
            aliases[m.group(2)] = m.group(1)
            kinds.update({f"{m.group(2)}.{k}": v for k, v in files.get(m.group(1), {}).items()})
    return kinds, aliases


def _yaml_copy(m: Macro, local: set[str], aliases: dict[str, str]) -> str:
    """The macro as written, renamed ``yaml__NAME``, calling the other macros' YAML copies."""
    text = "\n".join(m.source)
    for name in local:
        text = re.sub(rf"(?<![\w.]){name}\(", f"yaml__{name}(", text)
    for alias in aliases:
        text = re.sub(rf"(?<![\w.]){alias}\.(\w+)\(", rf"{alias}.yaml__\1(", text)
    return text + "\n"


_READ = {"members": "yjm", "items": "yji", "value": "yjv"}


def _emit_macro(m: Macro, kind: str, kinds: dict[str, str]) -> str | None:
    """The JSON macro, or None where it is kept as YAML."""
    if m.body is None:
        return None
    em = Emitter(kinds)
    try:
        if kind == "value":
            em.block(m.body, [_END], 0, value=True)
        else:
            em.stack.append(Frame(0, kind == "items", -1))
            em.block(m.body, [_END], 0)
            em.close(len(em.stack) - 1, 0)
    except Refused:
        return None
    return f"{{% macro {m.name}({m.params}) %}}\n" + "".join(em.out) + "{% endmacro %}\n"


def _kept(m: Macro, kind: str) -> str:
    """A macro kept as YAML: its YAML copy's text, read by yamljson."""
    args = ", ".join(p.split("=")[0].strip() for p in m.params.split(",") if p.strip())
    return f"{{% macro {m.name}({m.params}) %}}\n{{{{ yaml__{m.name}({args}) | {_READ[kind]} }}}}\n{{% endmacro %}}\n"


@dataclass
class _Rewrite:
    """One template, rewritten: its nodes, callables, import aliases, and each macro with its
    JSON version (None: kept as YAML)."""

    nodes: list[Node]
    local: dict[str, str]
    kinds: dict[str, str]
    aliases: dict[str, str]
    macros: dict[str, tuple[Macro, str | None]]


def _rewrite(source: str, files: dict[str, dict[str, str]], name: str) -> _Rewrite:
    nodes = parse(source)
    local = files.get(name) or kinds_of(source)
    kinds, aliases = _callable(nodes, local, files)
    macros = {m.name: (m, _emit_macro(m, local.get(m.name, "members"), kinds)) for m in nodes if isinstance(m, Macro)}
    return _Rewrite(nodes, local, kinds, aliases, macros)


def _assemble(r: _Rewrite, yaml_copies: set[str] | None) -> str:
    """The JSON template's text; Refused when the body (outside macros) cannot be rewritten."""
    out = [n.src + "\n" for n in r.nodes if isinstance(n, Stmt)]
    for name, (m, json_macro) in r.macros.items():
        if yaml_copies is None or name in yaml_copies or json_macro is None:
            out.append(_yaml_copy(m, set(r.local), r.aliases))
        out.append(json_macro or _kept(m, r.local.get(name, "members")))
    body = [n for n in r.nodes if not isinstance(n, (Macro, Stmt))]
    if any(isinstance(n, (Content, Block)) for n in body):
        em = Emitter(r.kinds)
        em.stack.append(Frame(0, False, 0))
        em.out.append(_OPEN)
        em.block(body, [_END], 0)
        em.close(len(em.stack), 0)
        out += em.out
    return "".join(out)


def transform(source: str, files: dict[str, dict[str, str]], name: str, yaml_copies: set[str] | None = None) -> str:
    """The JSON template of ``source`` (the template ``name``); ``files``: every template
    file's macro kinds; ``yaml_copies``: the macros whose YAML copy is needed (default: all).
    Refused when its body (outside macros) cannot be rewritten."""
    return _assemble(_rewrite(source, files, name), yaml_copies)


def transform_all(sources: dict[str, str]) -> dict[str, str]:
    """The JSON template of every template that has one, with the YAML copies of exactly the
    macros kept as YAML and of those they call, in any template (what they import)."""
    files = {name: kinds_of(src) for name, src in sources.items()}
    rewritten: dict[str, _Rewrite] = {}
    for name, src in sources.items():
        try:
            rewritten[name] = _rewrite(src, files, name)
        except Refused:
            continue
    todo = [(name, m) for name, r in rewritten.items() for m, (_, js) in r.macros.items() if js is None]
    need: set[tuple[str, str]] = set()
    while todo:  # a YAML copy calls the YAML copies of the macros it calls
        item = todo.pop()
        r = rewritten.get(item[0])
        if item in need or r is None or item[1] not in r.macros:
            continue
        need.add(item)
        for call in _CALL.findall("\n".join(r.macros[item[1]][0].source[1:])):
            alias, _, callee = call.rpartition(".")
            todo.append((r.aliases.get(alias, ""), callee) if alias else (item[0], callee))
    out = {}
    for name, r in rewritten.items():
        try:
            out[name] = _assemble(r, {m for f, m in need if f == name})
        except Refused:
            continue
    return out
