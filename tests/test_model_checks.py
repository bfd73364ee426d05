"""The field checks' walk (model/checks.py) runs only where validation met something to report.

``_parse_one`` validates with a context that ``base._saw_finding`` marks when a field
marked unsupported or no-effect is set, or a loose model has extra keys, and skips the
walk for unmarked documents (issue 14).  That is exact only if an unmarked document
never has a finding: checked here on every document of the tests' and samples' inputs,
and on the models themselves (every marked field runs the validator and defaults to None,
so the walk cannot report a value validation never saw).
"""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from envoygen import model as model_pkg
from envoygen.diagnostics import Findings
from envoygen.load import load_paths
from envoygen.model import base, checks
from test_load import YAML_FILES  # every YAML input of the tests and samples



# one document per place a finding can sit: a set unsupported field at the top of a spec and in
# lists, a no-effect field (and an unsupported one below a no-effect one), a loose model's extra key
MARKED = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: a}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP, targetPort: 8080}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b}
spec:
  hosts: ["*"]
  http:
  - route: [{destination: {host: x}}]
  - match: [{uri: {prefix: /}, statPrefix: s}]
    route: [{destination: {host: x}}]
    retries: {attempts: 2, backoff: 1s}
  tcp:
  - match: [{port: 81, sourceSubnet: 10.0.0.0/8}]
    route: [{destination: {host: x}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: c}
spec:
  hosts: ["*"]
  http:
  - delegate: {name: d}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: e}
spec:
  hosts: [e.internal]
  ports: [{number: 80, name: http}]
  endpoints: [{address: 10.0.0.1, network: n1}]
---
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: f}
spec: {notAnOperatorField: 1}
"""


def _documents(tmp: Path) -> list[tuple[str, type[pydantic.BaseModel], dict]]:
    out = []
    marked = tmp / "marked.yaml"
    marked.write_text(MARKED)
    for path in [*YAML_FILES, marked]:
        docs, findings, _ = load_paths([str(path)])
        for doc in docs:
            data = doc.data
            if not isinstance(data, dict) or not isinstance(data.get("apiVersion"), str) or not isinstance(data.get("kind"), str):
                continue
            cls = model_pkg._model_for(doc, data["apiVersion"], data["kind"], data["kind"], Findings())
            if cls is not None:
                out.append((f"{path.name}:{doc.line}", cls, data))
    return out


def test_a_document_validation_did_not_mark_has_no_finding(tmp_path: Path) -> None:
    marked = unmarked = with_findings = 0
    for where, cls, data in _documents(tmp_path):
        seen: dict[str, bool] = {}
        try:
            obj = cls.model_validate(data, context=seen)
        except pydantic.ValidationError:
            continue
        found = checks.field_findings(obj)
        has = bool(found.unsupported or found.no_effect or found.extras)
        with_findings += has
        if seen:
            marked += 1
        else:
            unmarked += 1
            assert not has, f"{where}: {cls.__name__} has findings validation did not mark: {found}"
    # not vacuous: documents of both kinds, MARKED's five with a finding each
    assert with_findings >= 7 and unmarked >= 100 and marked >= with_findings, (marked, unmarked, with_findings)


def _model_classes() -> set[type[pydantic.BaseModel]]:
    found, todo = set(), [base.Strict, base.Loose]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


@pytest.fixture(scope="module")
def all_models() -> set[type[pydantic.BaseModel]]:
    for kind in ("AuthorizationPolicy", "RequestAuthentication", "EnvoyFilter", "Telemetry", "PeerAuthentication"):
        model_pkg._policy_model(kind)  # the policy kinds' models are imported when first used
    return _model_classes()


def test_every_marked_field_marks_validation_and_defaults_to_none(all_models: set) -> None:
    marked = 0
    for cls in all_models:
        for name, info in cls.model_fields.items():
            markers = [m for m in info.metadata if isinstance(m, (base.UnsupportedMarker, base.NoEffectMarker))]
            if not markers:
                continue
            marked += 1
            assert info.default is None and info.default_factory is None, f"{cls.__name__}.{name}"
            assert any(isinstance(m, pydantic.AfterValidator) and m.func is base._saw_finding for m in info.metadata), \
                f"{cls.__name__}.{name} is marked but does not mark validation"
    assert marked >= 60


def test_a_loose_model_with_extras_marks_validation(all_models: set) -> None:
    loose = [c for c in all_models if issubclass(c, base.Loose)]
    assert loose
    seen: dict[str, bool] = {}
    model_pkg.IstioOperator.model_validate(
        {"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator", "metadata": {"name": "x"},
         "spec": {"notAnOperatorField": 1}}, context=seen)
    assert seen == {"finding": True}
