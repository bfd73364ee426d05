"""``@record`` (envoygen/records.py) behaves as ``@dataclass(frozen=True)`` on every IR class.

Each IR class is compared with a twin made by ``dataclasses.dataclass(frozen=True)``
from the same fields: signature, docstring, repr, equality, hash, immutability,
``replace`` and default factories.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from envoygen import ir, irpolicy
from envoygen.records import record

IR_CLASSES = sorted({c for m in (ir, irpolicy) for c in vars(m).values()
                     if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == m.__name__},
                    key=lambda c: c.__qualname__)


def twin(cls: type) -> type:
    """The same fields (types, defaults, factories, repr/compare flags), as ``@dataclass(frozen=True)``."""
    ns: dict[str, Any] = {"__annotations__": {}, "__qualname__": cls.__qualname__, "__module__": cls.__module__}
    for f in dataclasses.fields(cls):
        ns["__annotations__"][f.name] = f.type
        kw: dict[str, Any] = {"repr": f.repr, "compare": f.compare, "hash": f.hash}
        if f.default is not dataclasses.MISSING:
            kw["default"] = f.default
        if f.default_factory is not dataclasses.MISSING:
            kw["default_factory"] = f.default_factory
        ns[f.name] = dataclasses.field(**kw)
    return dataclasses.dataclass(frozen=True)(type(cls.__name__, (), ns))


def sample(cls: type, tag: str) -> dict[str, Any]:
    """A value for every field without a default (the types do not matter at run time)."""
    return {f.name: f"{tag}-{f.name}" for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


def test_every_ir_class_is_a_record() -> None:
    assert len(IR_CLASSES) >= 40
    for cls in IR_CLASSES:
        assert cls.__setattr__.__module__ == "envoygen.records", cls


@pytest.mark.parametrize("cls", IR_CLASSES, ids=lambda c: c.__qualname__)
def test_record_matches_a_frozen_dataclass(cls: type) -> None:
    t = twin(cls)
    assert str(inspect.signature(cls)) == str(inspect.signature(t))
    if "__doc__" not in vars(cls) or vars(cls)["__doc__"] == cls.__name__ + str(inspect.signature(cls)).replace(" -> None", ""):
        assert cls.__doc__ == t.__doc__
    a, b = sample(cls, "a"), sample(cls, "b")
    x, y = cls(**a), t(**a)
    if "__repr__" not in vars(cls) or vars(cls)["__repr__"].__module__ == "envoygen.records":
        assert repr(x) == repr(y)
    assert x == cls(**a) and hash(x) == hash(cls(**a)) == hash(y)
    assert x != y  # another class: NotImplemented both ways, as between two dataclasses
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING:
            assert getattr(x, f.name) == f.default_factory()
    if a:
        other = cls(**b)
        assert (x == other) == (y == t(**b))
        changed = dataclasses.replace(x, **b)
        assert changed == other and type(changed) is cls
    name = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(x, name, "changed")
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(x, name)
    assert getattr(x, name) == getattr(y, name)


def test_record_refuses_what_it_does_not_implement() -> None:
    class WithPost:
        a: int

        def __post_init__(self) -> None:
            pass

    class KwOnly:
        a: int = dataclasses.field(default=0, kw_only=True)

    class NoInit:
        a: int = dataclasses.field(default=0, init=False)

    for cls in (WithPost, KwOnly, NoInit):
        with pytest.raises(TypeError, match="@record"):
            record(cls)


def test_record_keeps_methods_of_the_class_body() -> None:
    @record
    class Shown:
        a: int

        def __repr__(self) -> str:
            return "mine"

    assert repr(Shown(1)) == "mine" and Shown(1) == Shown(1) and hash(Shown(1)) == hash(Shown(1))
    assert repr(ir.Secret("n", "f", "d", "cert", (("tls.key", b"KEY"),), "c")).count("KEY") == 0


def test_compare_false_fields_are_left_out_of_eq_and_hash() -> None:
    @record
    class Part:
        a: int
        note: str = dataclasses.field(default="", compare=False)

    assert Part(1, "x") == Part(1, "y") and hash(Part(1, "x")) == hash(Part(1, "y"))
    assert Part(1) != Part(2)
