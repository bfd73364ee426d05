"""Typed resources from loaded documents.

``parse_documents`` turns every document into a typed, validated resource (or
findings), reports kinds a gateway does not need as skipped, and refuses the
ones that would change gateway behaviour but are not implemented.
"""

from __future__ import annotations

import base64
import binascii
import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from ..diagnostics import Findings
from ..load import Document, format_path
from .checks import NO_FINDINGS, field_findings
from .core import Secret, Service
from .networking import (API_GROUP, API_VERSIONS, DestinationRule, Gateway, ServiceEntry, VirtualService,
                         WorkloadEntryResource)
from .operator import IstioOperator

if TYPE_CHECKING:
    from .envoyfilter import EnvoyFilter
    from .security import AuthorizationPolicy, RequestAuthentication
    from .telemetry import Telemetry

T = TypeVar("T")

SECURITY_GROUP, SECURITY_VERSIONS = "security.istio.io", ("v1", "v1beta1")
TELEMETRY_GROUP, TELEMETRY_VERSIONS = "telemetry.istio.io", ("v1", "v1alpha1")

# The policy kinds' models (None here) are imported by _policy_model when a document of theirs appears.
_POLICY_GROUPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    SECURITY_GROUP: (SECURITY_VERSIONS, ("AuthorizationPolicy", "RequestAuthentication")),
    TELEMETRY_GROUP: (TELEMETRY_VERSIONS, ("Telemetry",))}

_NETWORKING: dict[str, type[BaseModel] | None] = {
    "Gateway": Gateway, "VirtualService": VirtualService, "DestinationRule": DestinationRule,
    "ServiceEntry": ServiceEntry, "EnvoyFilter": None, "WorkloadEntry": WorkloadEntryResource}


def _policy_model(kind: str) -> type[BaseModel]:
    """The model of EnvoyFilter, Telemetry, AuthorizationPolicy or RequestAuthentication, imported on
    first use: an input without them does not pay for building their classes."""
    if kind == "EnvoyFilter":
        from .envoyfilter import EnvoyFilter
        return EnvoyFilter
    if kind == "Telemetry":
        from .telemetry import Telemetry
        return Telemetry
    from .security import AuthorizationPolicy, RequestAuthentication
    return AuthorizationPolicy if kind == "AuthorizationPolicy" else RequestAuthentication

# Kinds whose presence would change what the gateway does, but which envoygen
# does not compile: refusing them is better than a gateway that behaves
# differently from the one the YAML describes.
_REFUSED = {
    ("networking.istio.io", "WorkloadGroup"): "WorkloadGroup is not implemented",
    ("extensions.istio.io", "WasmPlugin"): "WasmPlugin is not implemented",
}


# Every kind of the Istio API groups (istio/api, the release README names): a kind of
# one of these groups that is not listed is a typo, refused with a suggestion (EG0007).
_ISTIO_KINDS = {
    "networking.istio.io": ("Gateway", "VirtualService", "DestinationRule", "ServiceEntry", "WorkloadEntry",
                            "WorkloadGroup", "EnvoyFilter", "Sidecar", "ProxyConfig"),
    "security.istio.io": ("AuthorizationPolicy", "PeerAuthentication", "RequestAuthentication"),
    "telemetry.istio.io": ("Telemetry",),
    "extensions.istio.io": ("WasmPlugin",),
    "install.istio.io": ("IstioOperator",),
}


def _unknown_istio_kind(group: str, kind: str) -> str | None:
    """The error text for a kind an Istio API group does not have, else None."""
    known = _ISTIO_KINDS.get(group)
    if known is None or kind in known:
        return None
    close = difflib.get_close_matches(kind, known, n=1, cutoff=0.6)
    close = close or [k for k in known if k.lower() == kind.lower()]
    hint = f"; did you mean {close[0]}?" if close else f"; its kinds are {', '.join(known)}"
    return f"{group} has no kind {kind}{hint}"


@dataclass(frozen=True)
class Res(Generic[T]):
    """A validated resource with its source document."""

    obj: T
    doc: Document
    namespace: str

    @property
    def name(self) -> str:
        return self.obj.metadata.name  # type: ignore[attr-defined]

    @property
    def kind(self) -> str:
        return self.obj.kind  # type: ignore[attr-defined]

    @property
    def file(self) -> str:
        return self.doc.file

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def line(self, *path: Any) -> int:
        return self.doc.line_of(tuple(path))

    @property
    def created(self) -> str:
        return self.obj.metadata.creation_timestamp or ""  # type: ignore[attr-defined]

    def sort_key(self) -> tuple[str, str, str]:
        """Istio's configCompareByCreationTime: creation time, name, namespace."""
        return (self.created, self.name, self.namespace)


# which Resources list holds each kind
_LIST_OF = {"Gateway": "gateways", "VirtualService": "virtual_services", "DestinationRule": "destination_rules",
            "ServiceEntry": "service_entries", "Service": "services", "Secret": "secrets", "IstioOperator": "operators",
            "AuthorizationPolicy": "authorization_policies", "RequestAuthentication": "request_authentications",
            "EnvoyFilter": "envoy_filters", "Telemetry": "telemetries",
            "WorkloadEntry": "workload_entries"}

# Kinds whose pod-template labels ``--workload-address NAME=ADDR`` turns into a WorkloadEntry
POD_KINDS = {("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "DaemonSet"), ("", "Pod")}


@dataclass(frozen=True)
class PodTemplate:
    """A Deployment/StatefulSet/DaemonSet/Pod of the input: its name and its pods' labels (nothing else is read)."""

    kind: str
    name: str
    namespace: str
    labels: dict[str, str]
    file: str
    line: int


@dataclass
class Resources:
    gateways: list[Res[Gateway]] = field(default_factory=list)
    virtual_services: list[Res[VirtualService]] = field(default_factory=list)
    destination_rules: list[Res[DestinationRule]] = field(default_factory=list)
    service_entries: list[Res[ServiceEntry]] = field(default_factory=list)
    services: list[Res[Service]] = field(default_factory=list)
    secrets: list[Res[Secret]] = field(default_factory=list)
    operators: list[Res[IstioOperator]] = field(default_factory=list)
    authorization_policies: list[Res[AuthorizationPolicy]] = field(default_factory=list)
    request_authentications: list[Res[RequestAuthentication]] = field(default_factory=list)
    envoy_filters: list[Res[EnvoyFilter]] = field(default_factory=list)
    telemetries: list[Res[Telemetry]] = field(default_factory=list)
    workload_entries: list[Res[WorkloadEntryResource]] = field(default_factory=list)
    pod_templates: list[PodTemplate] = field(default_factory=list)
    secret_data: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict)

    def all(self) -> list[Res[Any]]:
        return [*self.gateways, *self.virtual_services, *self.destination_rules, *self.service_entries,
                *self.services, *self.secrets, *self.operators, *self.authorization_policies,
                *self.request_authentications, *self.envoy_filters, *self.telemetries, *self.workload_entries]


def _loc_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic adds validator names such as 'function-after[...]' for some errors
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p and p.endswith("]")) and "-" in p))


def _close(word: str, options: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the nearest option, or nothing."""
    import difflib

    hit = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean '{hit[0]}'?)" if hit else ""


def _model_at(model: Any, loc: tuple[Any, ...]) -> Any:
    """The pydantic model class that validates the object at ``loc``, if one does."""
    import typing

    for part in loc:
        if isinstance(part, int) or not (isinstance(model, type) and issubclass(model, BaseModel)):
            if isinstance(part, int):
                continue
            return None
        fields = {(f.alias or n): f for n, f in model.model_fields.items()}
        if part not in fields:
            return None
        ann = fields[part].annotation
        for _ in range(4):  # unwrap Optional[...], list[...], dict[str, ...], Annotated
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            if isinstance(ann, type) and issubclass(ann, BaseModel) or not args:
                break
            ann = args[-1]
        model = ann
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _field_names(model: Any) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()] if model is not None else []


def _report_validation(exc: ValidationError, doc: Document, kind: str, name: str, findings: Findings,
                       model: Any = None) -> None:
    errors = [(_loc_path(e["loc"]), e) for e in exc.errors()]
    unknown_parents = {loc[:-1] for loc, e in errors if e["type"] == "extra_forbidden"}
    missing_by_parent: dict[tuple[Any, ...], list[str]] = {}
    for loc, e in errors:
        if e["type"] == "missing":
            missing_by_parent.setdefault(loc[:-1], []).append(str(loc[-1]))
    what = f"{kind} {name}" if name else kind
    for loc, err in errors:
        path = format_path(loc)
        line = doc.line_of(loc)
        etype = err["type"]
        if etype == "extra_forbidden":
            # a misspelt required field is one mistake: one finding, naming the field it should be
            options = missing_by_parent.get(loc[:-1]) or _field_names(_model_at(model, loc[:-1]))
            findings.error(doc.file, line, "EG0101", f"{what}: unknown field '{loc[-1]}'{_close(str(loc[-1]), options)}",
                           path, "check the spelling against the Istio API reference")
        elif etype == "missing":
            if loc[:-1] in unknown_parents:
                continue  # reported as the unknown field next to it
            findings.error(doc.file, line, "EG0103", f"{what}: required field '{loc[-1]}' is missing", path)
        else:
            got = err.get("input")
            shown = repr(got)
            if len(shown) > 60:
                shown = shown[:57] + "..."
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            findings.error(doc.file, line, "EG0102", f"{what}: {msg} (found {shown})", path)


def _decode_secret(res: Res[Secret], findings: Findings) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, value in res.obj.data.items():
        try:
            out[key] = base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            findings.error(res.file, res.line("data", key), "EG0102",
                           f"Secret {res.key}: data.{key} is not valid base64", f"data.{key}")
    for key, value in res.obj.string_data.items():
        out[key] = value.encode("utf-8")
    return out


def parse_documents(docs: list[Document], default_namespace: str, findings: Findings) -> Resources:
    """Model every document; a modelled document's ``data`` is released (None): its positions stay."""
    res = Resources()
    seen: dict[tuple[str, str, str], Document] = {}
    for doc in docs:
        data = doc.data
        if not isinstance(data, dict):
            findings.error(doc.file, doc.line, "EG0003", f"document {doc.index} is a {type(data).__name__}, not a mapping")
            continue
        api_version, kind = data.get("apiVersion"), data.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            findings.error(doc.file, doc.line, "EG0003", f"document {doc.index} has no apiVersion and kind; not a Kubernetes object")
            continue
        if kind == "List" and api_version == "v1" and isinstance(data.get("items"), list):
            per_item: dict[Any, dict[tuple[Any, ...], int]] = {}  # grouped in one pass: linear in the List's size
            for p, ln in doc.positions.items():
                if len(p) > 2 and p[0] == "items":
                    per_item.setdefault(p[1], {})[p[2:]] = ln
            for i, item in enumerate(data["items"]):
                sub = Document(doc.file, doc.index, doc.line_of(("items", i)), item, per_item.get(i, {}))
                _parse_one(sub, sub.data if isinstance(sub.data, dict) else {}, default_namespace, findings, res, seen)
            continue
        _parse_one(doc, data, default_namespace, findings, res, seen)
        doc.data = None  # read by nothing after its model: freed now, its memory serves the next models (issue 14)
    return res


def _model_for(doc: Document, api_version: str, kind: str, label: str, findings: Findings) -> type[BaseModel] | None:
    """The model of a kind envoygen reads; None (with a finding) for kinds it refuses or skips."""
    group, _, version = api_version.rpartition("/")
    if group == API_GROUP and kind in _NETWORKING:
        if version not in API_VERSIONS:
            findings.error(doc.file, doc.line, "EG0006", f"{label}: apiVersion {api_version} is not one of "
                           + ", ".join(f"{API_GROUP}/{v}" for v in API_VERSIONS), "apiVersion")
            return None
        return _NETWORKING[kind] or _policy_model(kind)
    elif api_version == "v1" and kind in ("Service", "Secret"):
        return Service if kind == "Service" else Secret
    elif kind == "IstioOperator" and group == "install.istio.io":
        return IstioOperator
    elif group in _POLICY_GROUPS and kind in _POLICY_GROUPS[group][1]:
        versions = _POLICY_GROUPS[group][0]
        if version not in versions:
            findings.error(doc.file, doc.line, "EG0006", f"{label}: apiVersion {api_version} is not one of "
                           + ", ".join(f"{group}/{v}" for v in versions), "apiVersion")
            return None
        return _policy_model(kind)
    elif _unknown_istio_kind(group, kind):
        findings.error(doc.file, doc.line, "EG0007", f"{label}: {_unknown_istio_kind(group, kind)}", "kind")
        return None
    elif (group, kind) in _REFUSED:
        findings.error(doc.file, doc.line, "EG0104", f"{label}: {_REFUSED[(group, kind)]}; remove it or keep it out of envoygen's input", "kind")
        return None
    findings.info(doc.file, doc.line, "EG0005", f"{label} ({api_version}) does not configure the gateway; skipped")
    return None


def _record_pod_template(doc: Document, data: dict[str, Any], api_version: str, kind: str, name: str,
                         default_ns: str, res: Resources) -> None:
    """Keep a workload's pod labels (for ``--workload-address``); the kind is still reported as skipped."""
    group = api_version.rpartition("/")[0]
    if (group, kind) not in POD_KINDS or not name:
        return
    meta = data.get("metadata") or {}
    spec = data.get("spec") or {}
    template = spec.get("template") if isinstance(spec, dict) else None
    source = meta if kind == "Pod" else ((template or {}).get("metadata") or {}) if isinstance(template, dict) else {}
    labels = source.get("labels") if isinstance(source, dict) else None
    if not isinstance(labels, dict):
        labels = {}
    ns = meta.get("namespace") if isinstance(meta.get("namespace"), str) else default_ns
    res.pod_templates.append(PodTemplate(kind, name, ns, {str(k): str(v) for k, v in labels.items()}, doc.file, doc.line))


def _parse_one(doc: Document, data: dict[str, Any], default_ns: str, findings: Findings, res: Resources,
               seen: dict[tuple[str, str, str], Document]) -> None:
    api_version, kind = data.get("apiVersion"), data.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        findings.error(doc.file, doc.line, "EG0003", "object has no apiVersion and kind")
        return
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    name = meta.get("name") if isinstance(meta.get("name"), str) else ""
    label = f"{kind} {name}".strip()
    _record_pod_template(doc, data, api_version, kind, name, default_ns, res)
    model = _model_for(doc, api_version, kind, label, findings)
    if model is None:
        return
    seen_finding: dict[str, bool] = {}
    try:
        obj = model.model_validate(data, context=seen_finding)
    except ValidationError as exc:
        _report_validation(exc, doc, kind, name, findings, model)
        return
    # one walk: unsupported, no-effect and loose extra fields; only where validation met one (base._saw_finding)
    checked = field_findings(obj) if seen_finding else NO_FINDINGS
    for path, why in checked.unsupported:
        findings.error(doc.file, doc.line_of(path), "EG0104", f"{label}: field '{path[-1]}' is not supported: {why}",
                       format_path(path))
    if checked.unsupported and kind not in _NETWORKING:
        return  # networking resources are kept: the scope rule decides whether these errors stop the build
    for path, why in checked.no_effect:
        findings.info(doc.file, doc.line_of(path), "EG0005", f"{label}: {format_path(path)} has no effect on the gateway ({why})",
                      format_path(path))
    for path in checked.extras:
        findings.info(doc.file, doc.line_of(path), "EG0005",
                      f"{label}: {format_path(path)} does not configure the ingress gateway; skipped", format_path(path))
    namespace = obj.metadata.namespace or default_ns  # type: ignore[attr-defined]
    ident = (kind, namespace, name)
    if ident in seen:
        first = seen[ident]
        findings.error(doc.file, doc.line, "EG0105", f"{kind} {namespace}/{name} is defined twice (first at {first.file}:{first.line})")
        return
    seen[ident] = doc
    r = Res(obj, doc, namespace)
    getattr(res, _LIST_OF[kind]).append(r)
    if kind == "Secret":
        res.secret_data[(namespace, name)] = _decode_secret(r, findings)
