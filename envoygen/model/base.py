"""Strict pydantic base for the input APIs.

* ``extra="forbid"``: a field the API does not have is an error, by name.
* camelCase aliases, as the Istio and Kubernetes APIs spell them.
* strict types: ``"80"`` is not a port number, ``"true"`` is not a boolean.
* :data:`Unsupported` marks fields that are valid Istio but that envoygen does
  not implement; setting one is an EG0104 error (never silently ignored).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, WrapValidator, model_validator
from pydantic.alias_generators import to_camel

from .. import names


def _drop_nulls(data: Any) -> Any:
    """Kubernetes' convention: a field whose value is null is unset (``annotations:`` with no value)."""
    if isinstance(data, dict) and None in data.values():  # in C; of YAML's values only None equals None
        return {k: v for k, v in data.items() if v is not None}
    return data


class Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        strict=True,
        defer_build=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _nulls_unset(cls, data: Any) -> Any:
        return _drop_nulls(data)


class Loose(BaseModel):
    """For parts of foreign objects whose fields are read but not all modelled."""

    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True, frozen=True, defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _nulls_unset(cls, data: Any) -> Any:
        return _drop_nulls(data)

    @model_validator(mode="after")
    def _extras_seen(self, info: ValidationInfo) -> Any:
        if self.model_extra:
            _saw_finding(None, info)
        return self


def _saw_finding(value: Any, info: ValidationInfo) -> Any:
    """Validation came upon a field the checks walk reports (a set unsupported or no-effect field,
    a loose model's extra key): say so in the validation context when one is given (a dict:
    ``model._parse_one``'s), so that documents without any skip the walk (model/checks.py)."""
    if info.context is not None:
        info.context["finding"] = True
    return value


class UnsupportedMarker:
    def __init__(self, why: str) -> None:
        self.why = why


class NoEffectMarker:
    def __init__(self, why: str) -> None:
        self.why = why


def no_effect(why: str, typ: Any = Any) -> Any:
    """A field accepted as valid that does not change the gateway: reported as info (EG0005)."""
    return Annotated[typ, NoEffectMarker(why), AfterValidator(_saw_finding)]


def unsupported(why: str) -> Any:
    """A field Istio has and envoygen refuses: any value but null is an error."""
    return Annotated[Any, UnsupportedMarker(why), AfterValidator(_saw_finding)]


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns))+$")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float:
    """Go/protobuf duration text (``1.5s``, ``100ms``, ``1h30m``) → seconds."""
    if not isinstance(text, str) or not _DURATION.match(text):
        raise ValueError(f"{text!r} is not a duration like '5s', '100ms' or '1h'")
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)", text):
        total += float(num) * _UNIT[unit]
    return total


MAX_DURATION_SECONDS = 315_576_000_000  # google.protobuf.Duration's range


def _duration(value: Any, handler: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError("a duration must be a string with a unit, such as '5s'")
    seconds = parse_duration(value)
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"{value!r} is longer than a protobuf Duration allows (about 10,000 years)")
    return seconds


Duration = Annotated[float, WrapValidator(_duration)]


def _positive_duration(value: Any, handler: Any) -> float:
    seconds = _duration(value, handler)
    if seconds < 0.001:
        raise ValueError(f"{value!r}: duration must be at least 1ms")
    return seconds


# Istio's validateDuration (and Envoy's own rules for these fields): at least 1ms
PositiveDuration = Annotated[float, WrapValidator(_positive_duration)]

Port = Annotated[int, Field(ge=1, le=65535)]
UInt32 = Annotated[int, Field(ge=0, le=2**32 - 1)]
Int32 = Annotated[int, Field(ge=0, le=2**31 - 1)]
NonEmptyStr = Annotated[str, Field(min_length=1)]
# Kubernetes object names (RFC 1123): what a Deployment or a namespace may be called
DnsSubdomain = Annotated[str, Field(min_length=1, max_length=names.DNS1123_SUBDOMAIN_MAX,
                                    pattern=names.DNS1123_SUBDOMAIN_PATTERN)]
DnsLabel = Annotated[str, Field(min_length=1, max_length=names.DNS1123_LABEL_MAX, pattern=names.DNS1123_LABEL_PATTERN)]


class Metadata(Strict):
    name: NonEmptyStr
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # read-only bookkeeping from `kubectl get -o yaml`; accepted, without effect
    # except creationTimestamp, which orders Gateways and VirtualServices as Istio does
    creation_timestamp: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    managed_fields: list[Any] | None = None
    owner_references: list[Any] | None = None
    finalizers: list[str] | None = None
