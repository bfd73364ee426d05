"""Read YAML from files, directories and stdin, keeping source positions.

Each YAML document becomes a :class:`Document` with plain Python data and a
``positions`` map from field path (a tuple of keys and list indexes) to the
1-based line where that field starts, so that later stages can point errors at
``FILE:LINE``.

One pass over libyaml's events (C-accelerated parsing when PyYAML has libyaml)
builds the values and records the positions together; there is no node tree
and no second walk.  Hostile input is bounded here: file size, node count
(aliases count with the size of what they refer to, without being expanded),
nodes reached through aliases, and nesting depth (aliases included).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from .diagnostics import Findings
from .yamlevents import (Alias, Event, MapEnd, MapStart, Scalar, SeqEnd, SeqStart, StreamEnd, StreamStart,
                         events_in_c, pyyaml_events_adapted, start_of)

try:  # libyaml when present: an order of magnitude faster on big inputs
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on the PyYAML build
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_NODES_PER_FILE = 5_000_000
MAX_ALIAS_NODES = 200_000  # nodes reached through aliases, per file: bounds what later stages expand
MAX_DEPTH = 64

_SCALARS = yaml.constructor.SafeConstructor()
_IMPLICIT = _Loader.yaml_implicit_resolvers  # first character -> [(tag, regexp)]
_STR, _SEQ, _MAP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"
_AS_TEXT = ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary")  # Kubernetes treats these as strings
_NO_KEY = object()


Path_ = tuple[Any, ...]


@dataclass
class Document:
    file: str
    index: int
    line: int
    data: Any
    positions: dict[Path_, int] = field(default_factory=dict, repr=False)

    def line_of(self, path: Path_) -> int:
        """Line of the longest prefix of ``path`` that has a known position."""
        p = tuple(path)
        while p:
            if p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return self.line


class _TooBig(Exception):
    pass


class _Builder:
    """Builds one file's documents from libyaml events: Python values, the line of
    every field, and YAML problems, in one pass.  Aliases share the anchored value;
    their expanded size counts against the budgets, so an alias bomb is refused
    after a few hundred events, without expanding anything."""

    def __init__(self, get_event: Any) -> None:
        self.get = get_event
        self.nodes = 0
        self.alias_nodes = 0
        self.deepest = 0
        self.anchors: dict[str, tuple[Any, int, int]] = {}  # name -> (value, nodes, height)
        self.positions: dict[Path_, int] = {}
        self.problems: list[tuple[int, str, str]] = []  # (line, message, path)
        self.plain: dict[str, Any] = {}  # plain scalar text -> value (immutable values only)

    def document(self, ev: Event) -> Any:
        self.anchors = {}
        self.positions = {}
        self.problems = []
        return self.node(ev, (), 0, start_of(ev).line + 1)

    def _count(self, n: int = 1) -> None:
        self.nodes += n
        if self.nodes > MAX_NODES_PER_FILE:
            raise _TooBig(f"more than {MAX_NODES_PER_FILE} YAML nodes (after expanding aliases)")

    def node(self, ev: Event, path: Path_, depth: int, line: int) -> Any:
        """Build the node ``ev`` starts at ``path``, whose known line is ``line``."""
        cls = type(ev)
        self.nodes += 1
        if self.nodes > MAX_NODES_PER_FILE:
            raise _TooBig(f"more than {MAX_NODES_PER_FILE} YAML nodes (after expanding aliases)")
        if cls is Scalar:
            value = self.scalar(ev, path)
            if ev.args[0] is not None:  # its anchor
                self.anchors[ev.args[0]] = (value, 1, 0)
            return value
        if cls is Alias:
            return self.alias(ev, depth)
        if depth > MAX_DEPTH:
            raise _TooBig(f"nesting deeper than {MAX_DEPTH} levels")
        if depth > self.deepest:
            self.deepest = depth
        anchor, tag = ev.args[0], ev.args[1]
        if anchor is not None:
            start, outer, self.deepest = self.nodes, self.deepest, depth
        if cls is SeqStart:
            value = self.sequence(path, depth, line) if tag in (None, "!", _SEQ) else self.refuse(ev, path, depth)
        else:
            value = self.mapping(path, depth, line) if tag in (None, "!", _MAP) else self.refuse(ev, path, depth)
        if anchor is not None:
            self.anchors[anchor] = (value, self.nodes - start + 1, self.deepest - depth)
            self.deepest = max(outer, self.deepest)
        return value

    def alias(self, ev: Event, depth: int) -> Any:
        anchor, start_mark, _ = ev.args
        try:
            value, size, height = self.anchors[anchor]
        except KeyError:
            raise yaml.composer.ComposerError(None, None, f"found undefined alias {anchor!r}", start_mark) from None
        self.alias_nodes += size
        if self.alias_nodes > MAX_ALIAS_NODES:
            raise _TooBig(f"aliases expand to more than {MAX_ALIAS_NODES} YAML nodes")
        self._count(size - 1)
        if depth + height > MAX_DEPTH:
            raise _TooBig(f"nesting deeper than {MAX_DEPTH} levels (through an alias)")
        return value

    def refuse(self, ev: Event, path: Path_, depth: int) -> None:
        self.problems.append((start_of(ev).line + 1, f"unsupported YAML tag {ev.args[1]}", _fmt(path)))
        self.skip(ev, depth)
        return None

    def skip(self, ev: Event, depth: int) -> None:
        """Consume the rest of the node that ``ev`` starts, counting it against the budgets."""
        cls = type(ev)
        if cls is Scalar or cls is Alias:
            return
        level = 1
        while level:
            ev = self.get()
            cls = type(ev)
            if cls is SeqStart or cls is MapStart:
                level += 1
                if depth + level > MAX_DEPTH:
                    raise _TooBig(f"nesting deeper than {MAX_DEPTH} levels")
            elif cls is SeqEnd or cls is MapEnd:
                level -= 1
                continue
            self._count()

    # sequence() and mapping() read a plain or quoted scalar without tag or anchor whose value is
    # known (the common case: quoted text, or plain text seen before) in place, without a call.
    def sequence(self, path: Path_, depth: int, line: int) -> list[Any]:
        out: list[Any] = []
        get, positions, node, plain = self.get, self.positions, self.node, self.plain
        depth += 1
        i = -1
        while True:
            ev = get()
            cls = type(ev)
            if cls is SeqEnd:
                return out
            i += 1
            if cls is Scalar:
                anchor, tag, implicit, text, start_mark, _, _ = ev.args
                at = start_mark.line + 1
                if at != line:  # on the line already known for ``path``: line_of finds it without an entry
                    positions[path + (i,)] = at
                if tag is None and anchor is None:
                    value = plain.get(text, _NO_KEY) if implicit[0] else text
                    if value is not _NO_KEY:
                        self.nodes += 1
                        if self.nodes > MAX_NODES_PER_FILE:
                            raise _TooBig(f"more than {MAX_NODES_PER_FILE} YAML nodes (after expanding aliases)")
                        out.append(value)
                        continue
            else:
                at = start_of(ev).line + 1
                if at != line:
                    positions[path + (i,)] = at
            out.append(node(ev, path + (i,), depth, at))

    def mapping(self, path: Path_, depth: int, line: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        get, positions, node, plain = self.get, self.positions, self.node, self.plain
        depth += 1
        while True:
            kev = get()
            cls = type(kev)
            if cls is MapEnd:
                return result
            key = _NO_KEY
            if cls is Scalar:
                anchor, tag, implicit, text, start_mark, _, _ = kev.args
                at = start_mark.line + 1
                if tag is None and anchor is None:
                    key = plain.get(text, _NO_KEY) if implicit[0] else text
            else:
                at = start_of(kev).line + 1
            if key is _NO_KEY:
                key = self.key(kev, path, depth, at)
            else:
                self.nodes += 1
                if self.nodes > MAX_NODES_PER_FILE:
                    raise _TooBig(f"more than {MAX_NODES_PER_FILE} YAML nodes (after expanding aliases)")
            vev = get()
            if key is _NO_KEY:
                self.skip(vev, depth)
                continue
            if key in result:
                self.problems.append((at, f"duplicate key {key!r} in the same mapping", _fmt(path + (key,))))
                self.skip(vev, depth)
                continue
            if at != line:
                positions[path + (key,)] = at
            if type(vev) is Scalar:
                anchor, tag, implicit, text, _, _, _ = vev.args
                if tag is None and anchor is None:
                    value = plain.get(text, _NO_KEY) if implicit[0] else text
                    if value is not _NO_KEY:
                        self.nodes += 1
                        if self.nodes > MAX_NODES_PER_FILE:
                            raise _TooBig(f"more than {MAX_NODES_PER_FILE} YAML nodes (after expanding aliases)")
                        result[key] = value
                        continue
            result[key] = node(vev, path + (key,), depth, at)

    def key(self, kev: Event, path: Path_, depth: int, line: int) -> Any:
        cls = type(kev)
        if cls is Scalar and kev.args[1] is None and kev.args[2][0] and kev.args[3] == "<<":
            self.nodes += 1
            self.problems.append((line, "YAML merge keys (<<) are not supported", _fmt(path)))
            return _NO_KEY
        if cls is SeqStart or cls is MapStart:
            self.problems.append((line, "a mapping key must be a scalar", _fmt(path)))
            self.skip(kev, depth)
            return _NO_KEY
        key = self.node(kev, path + ("<key>",), depth, line)
        if isinstance(key, (list, dict)):  # an alias of a collection
            self.problems.append((line, "a mapping key must be a scalar", _fmt(path)))
            return _NO_KEY
        return key

    def scalar(self, ev: Event, path: Path_) -> Any:
        _, tag, implicit, value, _, _, _ = ev.args
        if tag is None or tag == "!":
            if not implicit[0]:
                return value  # quoted, or block text: a string
            try:
                return self.plain[value]
            except KeyError:
                pass
            tag = _STR
            for candidate, regexp in _IMPLICIT.get(value[:1], ()):
                if regexp.match(value):
                    tag = candidate
                    break
            if tag == _STR:
                self.plain[value] = value
                return value
            if tag in _AS_TEXT:
                return value
            result = self.construct(tag, ev, path)
            if type(result) in (int, float, bool, type(None)):
                self.plain[value] = result
            return result
        if tag == _STR:
            return value
        if tag in _AS_TEXT:
            return value
        return self.construct(tag, ev, path)

    def construct(self, tag: str, ev: Event, path: Path_) -> Any:
        _, _, _, value, start_mark, end_mark, style = ev.args
        ctor = _SCALARS.yaml_constructors.get(tag)
        if ctor is None or tag.startswith("tag:yaml.org,2002:python"):
            self.problems.append((start_mark.line + 1, f"unsupported YAML tag {tag}", _fmt(path)))
            return value
        try:
            return ctor(_SCALARS, yaml.ScalarNode(tag, value, start_mark, end_mark, style))
        except (yaml.YAMLError, ValueError) as exc:
            self.problems.append((start_mark.line + 1, f"bad scalar: {exc}", _fmt(path)))
            return value


def _fmt(path: Path_) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


format_path = _fmt


def parse_text(text: str, display: str, findings: Findings) -> list[Document]:
    """Parse one file's text into documents; problems become findings."""
    with events_in_c():
        return _parse(text, display, findings)


def _parse(text: str, display: str, findings: Findings) -> list[Document]:
    docs: list[Document] = []
    loader = _Loader(text)
    get = loader.get_event
    index = -1
    try:
        if type(get()) is not StreamStart:  # PyYAML's events: no libyaml, or the swap did not take
            get = pyyaml_events_adapted(get)
        builder = _Builder(get)
        while type(get()) is not StreamEnd:  # a document's start
            index += 1
            root = get()
            line = start_of(root).line + 1
            try:
                data = builder.document(root)
            except _TooBig as exc:
                findings.error(display, line, "EG0004", f"document {index}: {exc}; refused")
                return docs
            get()  # DocumentEndEvent
            for pline, message, path in builder.problems:
                findings.error(display, pline, "EG0002", message, path)
            if data is not None:
                docs.append(Document(display, index, line, data, builder.positions))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        problem = str(exc.problem or exc)
        code = "EG0004" if "nesting depth" in problem else "EG0002"
        findings.error(display, line, code, f"YAML does not parse: {problem}")
    except yaml.YAMLError as exc:
        findings.error(display, 0, "EG0002", f"YAML does not parse: {exc}")
    except RecursionError:
        findings.error(display, 0, "EG0004", "YAML nested too deeply; refused")
    finally:
        loader.dispose()
    return docs


def _read(data: bytes, display: str, findings: Findings) -> str | None:
    if len(data) > MAX_FILE_BYTES:
        findings.error(display, 0, "EG0001", f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; refused")
        return None
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or data[:4] in (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00"):
        findings.error(display, 0, "EG0001", "file is UTF-16/UTF-32 text; save it as UTF-8")
        return None
    if b"\x00" in data:
        findings.error(display, 0, "EG0001", "file is binary (contains NUL bytes), not YAML")
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        findings.error(display, line, "EG0001", f"file is not UTF-8 text (byte offset {exc.start})")
        return None


def _expand(path: str, findings: Findings) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted(
            f for f in p.rglob("*") if f.suffix in (".yaml", ".yml") and f.is_file() and not any(
                part.startswith(".") for part in f.relative_to(p).parts)
        )
        if not files:
            findings.warning(path, 0, "EG0001", "directory holds no *.yaml or *.yml file")
        return files
    if p.is_file():
        return [p]
    findings.error(path, 0, "EG0001", "no such file or directory" if not p.exists() else "not a regular file")
    return []


def load_paths(
    paths: list[str], stdin: BinaryIO | None = None,
) -> tuple[list[Document], Findings, list[tuple[str, str]]]:
    """Load every document from ``paths`` (``-`` is stdin).

    Returns the documents, the findings and, for the manifest, every input read
    as (path, sha256 of the bytes read), in the order given; stdin is ``-``.
    """
    findings = Findings()
    docs: list[Document] = []
    read: list[tuple[str, str]] = []
    for path in paths:
        if path == "-":
            stream = stdin if stdin is not None else sys.stdin.buffer
            raw = stream.read(MAX_FILE_BYTES + 1)
            text = _read(raw, "<stdin>", findings)
            read.append(("-", hashlib.sha256(raw).hexdigest()))
            if text is not None:
                docs.extend(parse_text(text, "<stdin>", findings))
            continue
        for f in _expand(path, findings):
            display = str(f)
            try:
                size = f.stat().st_size
                if size > MAX_FILE_BYTES:
                    findings.error(display, 0, "EG0001", f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; refused")
                    continue
                raw = f.read_bytes()
            except OSError as exc:
                findings.error(display, 0, "EG0001", f"cannot read: {exc.strerror or exc}")
                continue
            read.append((display, hashlib.sha256(raw).hexdigest()))
            text = _read(raw, display, findings)
            if text is not None:
                docs.extend(parse_text(text, display, findings))
    return docs, findings, read
