"""The field checks that follow validation, in one walk over a validated model.

Three findings come from the same walk (they were three reflective walks):

* fields marked :func:`~envoygen.model.base.unsupported` that are set (EG0104);
* fields marked :func:`~envoygen.model.base.no_effect` that are set (EG0005 info);
* extra keys of :class:`~envoygen.model.base.Loose` models (EG0005 info).

For every model class a *plan* is computed once: which fields carry a marker, and
which can hold a model that may yield a finding (a ``str`` or ``dict[str, str]``
field, or one whose models mark nothing anywhere below, is never entered).  The walk then visits only what can hold a finding.

Most documents hold none of the three, and validation already knows: a marked field
set in the input, or a loose model with extras, runs ``base._saw_finding``, which marks
the validation context.  ``_parse_one`` walks only documents so marked (issue 14);
``tests/test_model_checks.py`` checks that an unmarked document never has a finding.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import BaseModel

from .base import Loose, NoEffectMarker, UnsupportedMarker

Path_ = tuple[Any, ...]

_PLAIN, _UNSUPPORTED, _NO_EFFECT = 0, 1, 2


@dataclass
class FieldFindings:
    unsupported: list[tuple[Path_, str]] = field(default_factory=list)
    no_effect: list[tuple[Path_, str]] = field(default_factory=list)
    extras: list[Path_] = field(default_factory=list)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The model classes an annotation names (through Optional, list, dict, Annotated...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _marks(cls: type[BaseModel]) -> bool:
    """Whether ``cls`` itself can yield a finding: a marked field, or loose extras."""
    return issubclass(cls, Loose) or any(isinstance(m, (UnsupportedMarker, NoEffectMarker))
                                         for f in cls.model_fields.values() for m in f.metadata)


@cache
def _may_find(cls: type[BaseModel]) -> bool:
    """Whether a value of ``cls`` can hold a finding anywhere below it: some model class
    reachable from it (cycles included) marks one.  The walk skips the others' subtrees."""
    seen, todo = {cls}, [cls]
    while todo:
        c = todo.pop()
        if _marks(c):
            return True
        for f in c.model_fields.values():
            for m in _models_in(f.annotation):
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
    return False


def _holds_models(annotation: Any) -> bool:
    return any(_may_find(m) for m in _models_in(annotation))


@cache
def plan(cls: type[BaseModel]) -> tuple[tuple[str, str, int, str, bool], ...]:
    """(attribute, key as written in YAML, marker kind, why, may hold a model) per field to look at."""
    steps = []
    for fname, finfo in cls.model_fields.items():
        kind, why = _PLAIN, ""
        for m in finfo.metadata:
            if isinstance(m, UnsupportedMarker):
                kind, why = _UNSUPPORTED, m.why
                break
            if isinstance(m, NoEffectMarker):
                kind, why = _NO_EFFECT, m.why
                break
        deep = _holds_models(finfo.annotation)
        if kind != _PLAIN or deep:
            steps.append((fname, finfo.alias or fname, kind, why, deep))
    return tuple(steps)


NO_FINDINGS = FieldFindings((), (), ())  # type: ignore[arg-type] - what the walk finds where validation saw nothing to report


def field_findings(obj: BaseModel) -> FieldFindings:
    """Unsupported, no-effect and loose extra fields of ``obj``, each list in walk order."""
    out = FieldFindings()
    _walk(obj, (), out, False, False)
    return out


def _walk(obj: Any, path: Path_, out: FieldFindings, under_no_effect: bool, in_dict: bool) -> None:
    if isinstance(obj, BaseModel):
        if not in_dict and isinstance(obj, Loose) and obj.model_extra:
            out.extras.extend(path + (k,) for k in sorted(obj.model_extra))
        for fname, key, kind, why, deep in plan(type(obj)):
            value = getattr(obj, fname)
            if value is None:
                continue
            if kind == _UNSUPPORTED:
                out.unsupported.append((path + (key,), why))
                continue
            nested = under_no_effect
            if kind == _NO_EFFECT:
                if not under_no_effect:
                    out.no_effect.append((path + (key,), why))
                nested = True  # an unsupported field below still counts; a no-effect one is already said
            if deep:
                _walk(value, path + (key,), out, nested, in_dict)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _walk(v, path + (i,), out, under_no_effect, in_dict)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _walk(v, path + (k,), out, under_no_effect, True)
