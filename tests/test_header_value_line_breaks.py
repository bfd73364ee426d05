"""Header values with characters YAML 1.1 treats as line breaks (U+0085 NEL, U+2028 LS, U+2029 PS).

Istio hands such a value to Envoy through xDS untouched, and Envoy forbids only NUL, CR and LF in
header values. envoygen writes it raw (``json.dumps(ensure_ascii=False)``) into a double-quoted YAML
scalar, where a YAML 1.1 parser folds it into a space: Envoy's own loader (default YAML bundle) and
PyYAML (``--bootstrap-format json``, re-loaded in ``render.py``) both turn ``a<LS>b`` into ``a b``.
The value was changed without a word (and a C1 control such as U+0093 made the render fail with
EG0402, naming no file). Now the renderer writes these characters as JSON escapes, which YAML reads
back exactly: the client gets the exact bytes, in both bundle formats.
"""

from __future__ import annotations

import pytest

from harness import http_get

VALUES = {"x-ls": "a\u2028b", "x-ps": "c\u2029d", "x-nel": "e\u0085f", "x-c1": "g\u0093h"}

DOCS = """
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: vs, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - headers: {response: {set: {x-ls: "a\\u2028b", x-ps: "c\\u2029d", x-nel: "e\\u0085f", x-c1: "g\\u0093h"}}}
    directResponse: {status: 200}
"""


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_line_break_characters_in_header_values_are_kept_or_refused(gateway_factory, fmt):
    gw = gateway_factory(DOCS, ports=(80,), args=["--bootstrap-format", fmt], start=False)
    r = gw.render()
    if r.exit_code == 1:  # refused: acceptable, if it names the header
        assert "EG0106" in r.stderr, r.stderr
        return
    assert r.exit_code == 0, r.stderr
    gw.start()
    resp = http_get(gw, 80, "/", host="any.example.com")
    assert resp.status == 200
    # http.client decodes header bytes as latin-1
    got = {k: resp.headers.get(k, "").encode("latin-1") for k in VALUES}
    assert got == {k: v.encode("utf-8") for k, v in VALUES.items()}, got
