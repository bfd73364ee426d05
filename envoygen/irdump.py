"""The IR as JSON and back: for ``envoygen ir`` and the per-stage golden files.

``dump`` turns an ``ir.Bootstrap`` into plain JSON values; ``load`` rebuilds it.
Secret files appear as text when they are public (certificates, CAs, CRLs,
OCSP staples) and never with their bytes when they hold a private key: those
show their size and SHA-256 only, and ``load`` puts a placeholder in their place
(nothing rendered from the IR contains key bytes: they are copied as files).

A dataclass appears as an object of its fields; where a field may hold one of
several dataclasses (a route's action), the object names its type in ``@type``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import types
import typing
from typing import Any, Literal, Union

from . import ir

REDACTED_KEY = b"-----REDACTED PRIVATE KEY-----\n"


def _file_to_json(name: str, content: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    if ir.is_private_key_file(name):
        out["redacted"] = True
    else:
        try:
            out["text"] = content.decode("ascii")
        except UnicodeDecodeError:
            out["hex"] = content.hex()
    return out


def _file_from_json(d: dict[str, Any]) -> tuple[str, bytes]:
    if d.get("redacted"):
        return d["name"], REDACTED_KEY
    if "text" in d:
        return d["name"], d["text"].encode("ascii")
    return d["name"], bytes.fromhex(d["hex"])


def _dataclass_options(tp: Any) -> list[type]:
    args = typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else (tp,)
    return [a for a in args if dataclasses.is_dataclass(a)]


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, Any], ...]:
    """(name, resolved type) of a dataclass's fields, once per class: resolving the
    annotations (strings, under ``from __future__ import annotations``) compiles each
    of them, which per object made ``envoygen ir`` ~10x slower than ``render``."""
    hints = typing.get_type_hints(cls, vars(ir))
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls))


@functools.cache
def _tags(tp: Any) -> bool:
    """Whether a value declared ``tp`` names its dataclass (``tp`` allows several)."""
    return len(_dataclass_options(tp)) > 1


def _dump(value: Any, tp: Any) -> Any:
    """Plain JSON values for ``value`` of declared type ``tp``; ``@type`` where ``tp`` allows several dataclasses."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {"@type": type(value).__name__} if _tags(tp) else {}
        for name, hint in _fields(type(value)):
            if name == "files" and isinstance(value, ir.Secret):
                out["files"] = [_file_to_json(n, c) for n, c in value.files]
            else:
                out[name] = _dump(getattr(value, name), hint)
        return out
    if isinstance(value, tuple):
        if typing.get_origin(tp) in (Union, types.UnionType):
            tp = next((a for a in typing.get_args(tp) if typing.get_origin(a) is tuple), tp)
        args = typing.get_args(tp) if typing.get_origin(tp) is tuple else ()
        if len(args) == 2 and args[1] is Ellipsis:
            return [_dump(v, args[0]) for v in value]
        return [_dump(v, args[i] if i < len(args) else Any) for i, v in enumerate(value)]
    return value


def dump_bootstrap(b: ir.Bootstrap) -> dict[str, Any]:
    return _dump(b, ir.Bootstrap)


def _load(data: Any, tp: Any) -> Any:
    if data is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        options = [a for a in args if dataclasses.is_dataclass(a)]
        if isinstance(data, dict) and "@type" in data:
            cls = next(a for a in options if a.__name__ == data["@type"])
            return _load({k: v for k, v in data.items() if k != "@type"}, cls)
        if isinstance(data, dict) and options:
            return _load(data, options[0])
        for a in args:
            if typing.get_origin(a) is tuple and isinstance(data, list):
                return _load(data, a)
        return data
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_load(v, args[0]) for v in data)
        return tuple(_load(v, a) for v, a in zip(data, args))
    if origin is Literal:
        return data
    if tp is ir.Secret:
        kw = {name: _load(data[name], hint) for name, hint in _fields(ir.Secret) if name != "files"}
        return ir.Secret(files=tuple(_file_from_json(d) for d in data["files"]), **kw)
    if dataclasses.is_dataclass(tp):
        return tp(**{name: _load(data[name], hint) for name, hint in _fields(tp) if name in data})
    if tp is float and isinstance(data, int):
        return float(data)
    return data


def load_bootstrap(data: dict[str, Any]) -> ir.Bootstrap:
    return _load(data, ir.Bootstrap)


_ESCAPE = json.encoder.encode_basestring  # the C function json.dumps uses with ensure_ascii=False


def pretty_json(value: Any) -> str:
    """``json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)``, the same text, for
    the plain values ``dump_bootstrap`` makes (dicts with string keys, lists, strings,
    numbers, booleans, None): one recursive function appending to a list, where json's
    indenting encoder (pure Python) nests a generator per level (~3x slower at 1,000 hosts)."""
    out: list[str] = []
    _pretty(value, "\n", out)
    return "".join(out)


def _pretty(value: Any, pad: str, out: list[str]) -> None:
    kind = type(value)
    if kind is str:
        out.append(_ESCAPE(value))
    elif kind is dict:
        if not value:
            out.append("{}")
            return
        inner = pad + "  "
        first = True
        for k in sorted(value):
            if type(k) is not str:
                raise TypeError(f"a key that is not a string: {k!r}")
            out.append(("{" if first else ",") + inner + _ESCAPE(k) + ": ")
            first = False
            _pretty(value[k], inner, out)
        out.append(pad + "}")
    elif kind is list or kind is tuple:
        if not value:
            out.append("[]")
            return
        inner = pad + "  "
        first = True
        for v in value:
            out.append(("[" if first else ",") + inner)
            first = False
            _pretty(v, inner, out)
        out.append(pad + "]")
    elif kind is int:
        out.append(int.__repr__(value))
    elif value is None:
        out.append("null")
    elif kind is bool:
        out.append("true" if value else "false")
    else:
        out.append(json.dumps(value))  # a float (NaN, Infinity as json writes them), or json's TypeError
