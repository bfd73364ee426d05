"""AUTO_PASSTHROUGH (Istio's east-west gateway): route by Istio's SNI
``outbound_.<port>_.<subset>_.<host>`` to the matching cluster, TLS untouched.

Real TLS clients (python ssl) send those SNIs; the backends are TLS servers with their
own certificates, so the handshake the client sees is the backend's (not terminated).
"""

from __future__ import annotations

import yaml

from harness import LOCALHOST, tls_exchange, tls_handshake

NS = "test"


def _se(name: str, port: int, location: str = "MESH_INTERNAL", labels: str = "{}") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {NS}}}
spec:
  hosts: [{name}.{NS}.svc.cluster.local]
  location: {location}
  ports: [{{number: 443, name: tls, protocol: TLS, targetPort: {port}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, labels: {labels}}}]
"""


GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: cross-network-gateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    tls: {mode: AUTO_PASSTHROUGH}
    hosts: ["*.local"]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a, namespace: test}
spec:
  host: a
  subsets: [{name: v1, labels: {version: v1}}]
"""


def test_auto_passthrough_routes_two_services_by_istio_sni(backend_factory, gateway_factory, cert_authority, tmp_path):
    backends = {}
    for n in ("a", "b", "ext"):
        d = cert_authority.issue(f"{n}.{NS}.svc.cluster.local").write(tmp_path / n, ca=False)
        backends[n] = backend_factory.tls(n, cert=d / "tls.crt", key=d / "tls.key")
    ca = cert_authority.write_ca(tmp_path / "ca.pem")
    text = (GATEWAY + "---" + _se("a", backends["a"].port, labels="{version: v1}") + "---" + _se("b", backends["b"].port)
            + "---" + _se("ext", backends["ext"].port, location="MESH_EXTERNAL"))
    gw = gateway_factory(text, ports=(15443,))
    port = gw.port(15443)
    for sni, who in ((f"outbound_.443_._.a.{NS}.svc.cluster.local", "a"),
                     (f"outbound_.443_.v1_.a.{NS}.svc.cluster.local", "a"),
                     (f"outbound_.443_._.b.{NS}.svc.cluster.local", "b")):
        hs = tls_handshake(LOCALHOST, port, sni, ca=ca, verify=False)
        assert hs.ok and hs.subject_cn == f"{who}.{NS}.svc.cluster.local", (sni, hs.error, hs.subject_cn)
        assert tls_exchange(port, sni, b"hi\n", verify=False) == f"{who}\n".encode()
        assert backends[who].handshakes[-1]["sni"] == sni  # the client's SNI reaches the backend: TLS end to end
    # no chain for an unknown SNI, a subset that does not exist, or a MESH_EXTERNAL ServiceEntry
    for sni in ("a.test.svc.cluster.local", f"outbound_.443_.v9_.a.{NS}.svc.cluster.local",
                f"outbound_.443_._.ext.{NS}.svc.cluster.local"):
        hs = tls_handshake(LOCALHOST, port, sni, verify=False)
        assert not hs.ok and hs.cert is None, sni
    assert backends["ext"].handshakes == []
    boot = yaml.safe_load(gw.bootstrap_path.read_text())
    (lst,) = [x for x in boot["static_resources"]["listeners"] if x["name"] == f"0.0.0.0_{port}"]
    names = sorted(n for c in lst["filter_chains"] for n in c["filter_chain_match"]["server_names"])
    assert names == [f"outbound_.443_._.a.{NS}.svc.cluster.local", f"outbound_.443_._.b.{NS}.svc.cluster.local",
                     f"outbound_.443_.v1_.a.{NS}.svc.cluster.local"], names
