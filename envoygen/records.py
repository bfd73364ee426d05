"""``@record``: a frozen dataclass whose methods cost less to make and to call.

The IR (ir.py, irpolicy.py) is ~40 frozen dataclasses, and the translator builds
tens of thousands of them at 1,000 hosts (issue 14).  On Python 3.11 two costs of
``@dataclass(frozen=True)`` show there:

* definition: the dataclass module ``exec``s each generated method separately
  (six per frozen class) and computes an ``inspect.signature`` for every class
  without a docstring; ``record`` ``exec``s one source per class and writes that
  text from the fields (importing the IR: ~45 ms -> ~22 ms);
* construction: the generated ``__init__`` looks ``object.__setattr__`` up for
  every field; ``record``'s calls it as a global (~20 % less per object).  Writing
  the instance ``__dict__`` would be cheaper still, but it turns the object's
  inline attribute values into a dict and makes every later read ~2x slower.

What the class is, is unchanged: ``dataclasses.fields``/``replace``/``is_dataclass``
work, instances are immutable (assigning or deleting an attribute raises
``dataclasses.FrozenInstanceError``), equality and the hash are by value over the
same fields, the repr reads the same, and a method the class body defines is kept.
Features the IR does not use (``__post_init__``, ``InitVar``, keyword-only or
``init=False`` fields, ordering) are refused when the class is defined, so they
are never silently ignored; ``tests/test_records.py`` compares every IR class with
its ``@dataclass(frozen=True)`` twin.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")

class _Factory:
    def __repr__(self) -> str:
        return "<factory>"  # as dataclasses shows it in a signature


_HAS_FACTORY = _Factory()  # an __init__ argument's default when the field has a default_factory


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


def _parameter(f: dataclasses.Field) -> str:
    """``f`` as inspect.signature shows the ``__init__`` parameter (string annotations, as this package writes them)."""
    text = f"{f.name}: {f.type!r}"
    if f.default is not dataclasses.MISSING:
        return f"{text} = {f.default!r}"
    return f"{text} = <factory>" if f.default_factory is not dataclasses.MISSING else text


def record(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen dataclass (see the module's text)."""
    auto_doc = cls.__dict__.get("__doc__") is None
    if "__post_init__" in cls.__dict__ or "__setattr__" in cls.__dict__ or "__delattr__" in cls.__dict__:
        raise TypeError(f"@record {cls.__qualname__}: __post_init__, __setattr__ and __delattr__ are not supported")
    if auto_doc:
        cls.__doc__ = "-"  # keeps dataclass() from computing a signature for it; written below
    cls = dataclasses.dataclass(init=False, repr=False, eq=False)(cls)  # fields only: no method is generated
    fields = dataclasses.fields(cls)
    for f in fields:
        if not f.init or f.kw_only is True or type(f.type) is dataclasses.InitVar:
            raise TypeError(f"@record {cls.__qualname__}.{f.name}: init=False, kw_only and InitVar are not supported")
    env: dict[str, Any] = {"_HAS_FACTORY": _HAS_FACTORY, "_set": object.__setattr__}
    params, body = [], []
    for f in fields:
        if f.default is not dataclasses.MISSING:
            env[f"_d_{f.name}"] = f.default
            params.append(f"{f.name}=_d_{f.name}")
            body.append(f"    _set(self, {f.name!r}, {f.name})")
        elif f.default_factory is not dataclasses.MISSING:
            env[f"_f_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_HAS_FACTORY")
            body.append(f"    _set(self, {f.name!r}, _f_{f.name}() if {f.name} is _HAS_FACTORY else {f.name})")
        else:
            params.append(f.name)
            body.append(f"    _set(self, {f.name!r}, {f.name})")
    shown = ", ".join(f"{f.name}={{self.{f.name}!r}}" for f in fields if f.repr)
    compared = "".join(f"self.{f.name}, " for f in fields if f.compare)
    other = "".join(f"other.{f.name}, " for f in fields if f.compare)
    hashed = "".join(f"self.{f.name}, " for f in fields if (f.compare if f.hash is None else f.hash))
    src = "\n".join([
        f"def __init__(self, {', '.join(params)}):", *(body or ["    pass"]),
        "def __repr__(self):",
        f"    return self.__class__.__qualname__ + f\"({shown})\"",
        "def __eq__(self, other):",
        "    if other.__class__ is self.__class__:",
        f"        return ({compared}) == ({other})",
        "    return NotImplemented",
        "def __hash__(self):",
        f"    return hash(({hashed}))",
    ]) + "\n"
    exec(src, env)  # noqa: S102 - the source is built above from the class's own field names
    env["__init__"].__annotations__ = {**{f.name: f.type for f in fields}, "return": None}
    for name in ("__init__", "__repr__", "__eq__", "__hash__"):
        if name not in cls.__dict__ or name == "__hash__" and cls.__dict__[name] is None:
            fn = env[name]
            fn.__qualname__ = f"{cls.__qualname__}.{name}"
            setattr(cls, name, fn)
    cls.__setattr__ = _frozen_setattr  # type: ignore[assignment]
    cls.__delattr__ = _frozen_delattr  # type: ignore[assignment]
    if auto_doc:  # what @dataclass writes for a class without a docstring (its signature, from the fields)
        cls.__doc__ = f"{cls.__name__}({', '.join(_parameter(f) for f in fields)})"
    return cls
