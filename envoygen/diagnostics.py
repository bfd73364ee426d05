"""Findings: what the loader, the model and the analyzer say about the input.

A finding carries a stable code (see ``CODES``), a severity, the source position
and the field path, and prints as ``FILE:LINE: SEVERITY CODE message [field.path]``
(severity ``error``, ``warning`` or ``info``: one format for every finding).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

SEVERITIES = ("error", "warning", "info")

# The catalogue: one line per code. README's feature table lists them.
CODES: dict[str, str] = {
    # loading
    "EG0001": "file cannot be read (missing, not a file, not UTF-8, too large)",
    "EG0002": "YAML does not parse",
    "EG0003": "YAML document is not a mapping, or has no apiVersion/kind",
    "EG0004": "YAML too big or too deep (alias bomb, nesting, size limit)",
    "EG0005": "kind is not used by a gateway and was skipped",
    "EG0006": "unsupported apiVersion for a supported kind",
    "EG0007": "unknown kind in an Istio API group (a misspelt kind is never skipped)",
    # model (schema)
    "EG0101": "unknown field (not part of the API, or not supported by envoygen)",
    "EG0102": "wrong type or value for a field",
    "EG0103": "required field missing",
    "EG0104": "field is valid Istio but not supported by envoygen",
    "EG0105": "duplicate resource (same kind, namespace and name)",
    "EG0106": "invalid value for a field (Istio validation rule)",
    # analyzer
    "EG0201": "VirtualService refers to a Gateway that does not exist",
    "EG0202": "VirtualService host is served by none of its Gateways' servers",
    "EG0203": "destination host has no endpoints (no ServiceEntry, no Service)",
    "EG0204": "destination subset is not defined by any DestinationRule",
    "EG0205": "destination port is not exposed by the service",
    "EG0206": "Gateway servers conflict on a port (protocol or duplicate host)",
    "EG0207": "route is unreachable: a catch-all route comes before it",
    "EG0208": "regular expression is rejected by RE2",
    "EG0209": "several DestinationRules for one host",
    "EG0210": "Gateway selects no gateway workload",
    "EG0211": "--port-map names a port no server uses",
    "EG0212": "no listener would be produced for a server, or for a whole gateway workload",
    "EG0213": "several VirtualServices for one host with conflicting routes",
    "EG0214": "two listeners would bind the same port (gateway, admin, readiness, stats)",
    "EG0215": "policy (AuthorizationPolicy, RequestAuthentication, EnvoyFilter, Telemetry) applies to no gateway workload",
    "EG0216": "AuthorizationPolicy rule uses HTTP-only fields on a TCP filter chain",
    "EG0217": "AuthorizationPolicy action CUSTOM (ext_authz provider) is not supported",
    "EG0218": "EnvoyFilter patch matches nothing in the gateway's configuration",
    "EG0221": "EnvoyFilter patch target (applyTo, operation, context) is not applied by envoygen",
    "EG0222": "Telemetry access-log provider unknown or not supported (several at once, not a file logger)",
    "EG0230": "--workload-address names no Deployment, StatefulSet, DaemonSet or Pod of the input",
    "EG0231": "destination subset selects no endpoint: no WorkloadEntry (or --workload-address) carries its labels",
    # credentials
    "EG0301": "credential referenced but absent",
    "EG0302": "credential name is not a valid Kubernetes name",
    "EG0303": "PEM does not parse",
    "EG0304": "certificate and key do not match",
    "EG0305": "certificate expired or not yet valid",
    "EG0306": "server host not covered by the certificate's SANs",
    "EG0307": "certificate chain does not verify against the CA",
    "EG0308": "credentials directory entry is unsafe (symlink leaving the directory)",
    "EG0310": "RequestAuthentication JWKS cannot be had (jwksUri unreachable or not fetched, not a JWK set)",
    # output / environment
    "EG0401": "Envoy rejected the rendered configuration",
    "EG0402": "template error",
    "EG0403": "the loaded bootstrap would come near --max-heap",
}


@dataclass(frozen=True, order=True)
class Finding:
    """One message about the input. Ordered by file, line, code for stable output."""

    file: str
    line: int
    code: str
    message: str
    path: str = ""
    severity: str = "error"
    hint: str = field(default="", compare=False)

    def format(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.severity} {self.code} {self.message}"
        if self.path:
            text += f" [{self.path}]"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "line": self.line,
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "path": self.path,
            "hint": self.hint,
        }


class Findings:
    """An ordered collection; ``errors`` tells whether the pipeline must stop."""

    def __init__(self) -> None:
        self._items: list[Finding] = []
        self._seen: set[Finding] = set()

    def add(self, finding: Finding) -> None:
        if finding.code not in CODES:  # a programming error, caught by tests
            raise ValueError(f"unknown finding code {finding.code}")
        if finding not in self._seen:
            self._seen.add(finding)
            self._items.append(finding)

    def error(self, file: str, line: int, code: str, message: str, path: str = "", hint: str = "") -> None:
        self.add(Finding(file, line, code, message, path, "error", hint))

    def warning(self, file: str, line: int, code: str, message: str, path: str = "", hint: str = "") -> None:
        self.add(Finding(file, line, code, message, path, "warning", hint))

    def info(self, file: str, line: int, code: str, message: str, path: str = "", hint: str = "") -> None:
        self.add(Finding(file, line, code, message, path, "info", hint))

    def rewrite(self, fn: "Callable[[Finding], Finding]") -> None:
        """Replace every finding by ``fn(finding)`` (the scope rule demotes some errors to warnings)."""
        items = [fn(f) for f in self._items]
        self._items, self._seen = [], set()
        for f in items:
            self.add(f)

    def extend(self, other: "Findings") -> None:
        for f in other:
            self.add(f)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.sorted() if f.severity == "error"]

    def sorted(self) -> list[Finding]:
        return sorted(self._items)

    def __iter__(self):
        return iter(self.sorted())

    def __len__(self) -> int:
        return len(self._items)
