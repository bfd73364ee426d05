"""telemetry.istio.io Telemetry (v1, v1alpha1): access logging only; metrics and tracing are refused by name."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .base import Metadata, NonEmptyStr, Strict, unsupported
from .security import TargetRef, WorkloadSelector


class ProviderRef(Strict):
    name: NonEmptyStr


class LogFilter(Strict):
    expression: NonEmptyStr


class LogMatch(Strict):
    mode: Literal["CLIENT_AND_SERVER", "CLIENT", "SERVER"] = "CLIENT_AND_SERVER"


class AccessLogging(Strict):
    providers: list[ProviderRef] = Field(default_factory=list)
    disabled: bool | None = None
    filter: LogFilter | None = None
    match: LogMatch | None = None


class TelemetrySpec(Strict):
    selector: WorkloadSelector | None = None
    target_ref: TargetRef | None = None
    target_refs: list[TargetRef] = Field(default_factory=list)
    access_logging: list[AccessLogging] = Field(default_factory=list)
    metrics: unsupported("Telemetry metrics are not implemented: the gateway exposes Envoy's own stats on 15090") = None
    tracing: unsupported("Telemetry tracing is not implemented: envoygen configures no tracer (docs/istio-fidelity.md)") = None


class Telemetry(Strict):
    api_version: str
    kind: Literal["Telemetry"]
    metadata: Metadata
    spec: TelemetrySpec = Field(default_factory=TelemetrySpec)
    status: Any = None
