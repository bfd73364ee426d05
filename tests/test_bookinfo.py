"""Istio's bookinfo (samples/bookinfo) through the stock Envoy, and WorkloadEntry endpoints.

envoygen has no view of pods: a Kubernetes Service's selector picks WorkloadEntries (as
Istio does), and ``--workload-address NAME=ADDR[:PORT]`` turns a Deployment of the input
into one, with its pod-template labels.  So subsets select endpoints by ``version``.
Here every version is a backend on 127.0.0.1 with its own port (``ADDR:PORT``).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from harness import http_get, run_envoygen

from istio_docs import NS, dump, gateway_doc, to, vs_doc

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "bookinfo"
HERE = Path(__file__).resolve().parent

# virtual-service-reviews-v2-v3, bound to the gateway as well (Istio's file binds it to the mesh only)
REVIEWS_AT_GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-at-gateway, namespace: default}
spec:
  hosts: [reviews]
  gateways: [bookinfo-gateway]
  http:
  - route:
    - destination: {host: reviews, subset: v2}
      weight: 50
    - destination: {host: reviews, subset: v3}
      weight: 50
"""

VERSIONS = ("productpage-v1", "details-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3")


def _addresses(backends: dict, skip: tuple[str, ...] = ()) -> list[str]:
    out = []
    for name, be in backends.items():
        if name not in skip:
            out += ["--workload-address", f"{name}=127.0.0.1:{be.port}"]
    return out


def test_bookinfo_version_routing_by_labels(backend_factory, gateway_factory):
    backends = {v: backend_factory(v) for v in VERSIONS}
    gw = gateway_factory([SAMPLE, REVIEWS_AT_GATEWAY], ports=(8080,), args=_addresses(backends))
    # bookinfo-gateway's VirtualService: /productpage → productpage (Service selector app=productpage)
    r = http_get(gw, 8080, "/productpage", host="bookinfo.example.com")
    assert (r.status, r.headers["x-backend"]) == (200, "productpage-v1")
    assert http_get(gw, 8080, "/other", host="bookinfo.example.com").status == 404
    # virtual-service-reviews-v2-v3 at the gateway: 50/50 between the v2 and v3 pods, never v1
    seen = {"reviews-v1": 0, "reviews-v2": 0, "reviews-v3": 0}
    n = 200
    for _ in range(n):
        r = http_get(gw, 8080, "/reviews/0", host="reviews.default.svc.cluster.local")
        assert r.status == 200
        seen[r.headers["x-backend"]] += 1
    print(f"bookinfo reviews split over {n} requests: {seen}")
    assert seen["reviews-v1"] == 0, seen
    # 50/50 over 200: expected 100 each, sd ~7; a generous bound
    assert 60 <= seen["reviews-v2"] <= 140 and seen["reviews-v2"] + seen["reviews-v3"] == n, seen
    assert backends["reviews-v1"].count == 0
    # the subset clusters hold exactly the pods of their version
    clusters = gw.admin("clusters")
    for v in ("v1", "v2", "v3"):
        lines = [ln for ln in clusters.splitlines()
                 if ln.startswith(f"outbound|9080|{v}|reviews.default.svc.cluster.local::") and "::health_flags::" in ln]
        assert len(lines) == 1 and f"127.0.0.1:{backends[f'reviews-{v}'].port}" in lines[0], lines


def test_subset_without_pods_names_the_workload_entry_to_add(backend_factory, gateway_factory):
    backends = {v: backend_factory(v) for v in VERSIONS}
    gw = gateway_factory([SAMPLE, REVIEWS_AT_GATEWAY], ports=(8080,), args=_addresses(backends, skip=("reviews-v3",)),
                         start=False)
    r = gw.render()
    assert r.exit_code == 1, r.stderr
    assert ("error EG0231 VirtualService default/reviews-at-gateway: subset 'v3' of reviews.default.svc.cluster.local "
            "selects no endpoint: no WorkloadEntry in namespace default has the Service's selector {'app': 'reviews'} "
            "and the subset's labels {'version': 'v3'}") in r.stderr, r.stderr
    assert ("(hint: add {apiVersion: networking.istio.io/v1, kind: WorkloadEntry, metadata: {name: reviews-v3, "
            "namespace: default}, spec: {address: <IP of the pods>, labels: {app: reviews, version: v3}}}, or pass "
            "--workload-address NAME=ADDR for the Deployment whose pod labels are") in r.stderr, r.stderr
    assert not (r.out_dir / "envoy.yaml").exists()


def test_workload_address_naming_no_workload_is_an_error(tmp_path):
    out = tmp_path / "out"
    p = run_envoygen(["render", "-f", str(SAMPLE), "-o", str(out), "--workload-address", "reviews-v9=10.0.0.9"])
    assert p.returncode == 1
    assert "EG0230 --workload-address reviews-v9=10.0.0.9: no Deployment, StatefulSet, DaemonSet or Pod named reviews-v9" in p.stderr
    assert "Deployment default/reviews-v2" in p.stderr  # the known ones are listed
    assert not out.exists()


def test_bookinfo_mtls_rules_need_mesh_identity(tmp_path, cert_authority):
    """destination-rule-all-mtls (ISTIO_MUTUAL): without --mesh-identity an error naming what to supply;
    with it, the bundle builds and Envoy accepts it."""
    d = tmp_path / "in"
    d.mkdir()
    for f in ("bookinfo.yaml", "bookinfo-gateway.yaml"):
        (d / f).write_text((SAMPLE / f).read_text())
    (d / "mtls.yaml").write_text((HERE / "bookinfo" / "destination-rule-all-mtls.yaml").read_text())
    out = tmp_path / "out"
    p = run_envoygen(["render", "-f", str(d), "-o", str(out), "--workload-address", "productpage-v1=10.0.0.10"])
    assert p.returncode == 1
    lines = p.stderr.splitlines()
    needs = "EG0301 tls mode ISTIO_MUTUAL needs the mesh identity: pass --mesh-identity DIR"
    # productpage is routed: an error; reviews is not (no route of the gateway reaches it): a warning saying why
    assert any(f"error {needs}" in ln for ln in lines), p.stderr
    assert any(f"warning {needs}" in ln and "DestinationRule default/reviews: no route of a built gateway" in ln
               for ln in lines), p.stderr
    assert not out.exists()
    from test_mesh_identity import _mesh_dir

    mesh = _mesh_dir(cert_authority, tmp_path)
    p = run_envoygen(["validate", "-f", str(d), "--workload-address", "productpage-v1=10.0.0.10", "--mesh-identity", str(mesh)])
    assert p.returncode == 0, p.stderr


def _we(name: str, port: int, labels: dict, **spec) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry", "metadata": {"name": name, "namespace": NS},
            "spec": {"address": "127.0.0.1", "ports": {"http": port}, "labels": labels, **spec}}


def test_workload_entries_selected_by_service_and_service_entry(backend_factory, gateway_factory):
    """WorkloadEntry address, ports, labels, weight and locality; picked by a Service's selector and by a
    ServiceEntry's workloadSelector; subsets by label; locality lands on the cluster's endpoints."""
    a1, a2, b1 = backend_factory("a1"), backend_factory("a2"), backend_factory("b1")
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": NS},
           "spec": {"selector": {"app": "a"}, "ports": [{"port": 80, "name": "http", "targetPort": 9}]}}
    se = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "b", "namespace": NS},
          "spec": {"hosts": ["b.internal"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                   "resolution": "STATIC", "location": "MESH_INTERNAL", "workloadSelector": {"labels": {"app": "b"}}}}
    dr = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "a", "namespace": NS},
          "spec": {"host": "a", "subsets": [{"name": "one", "labels": {"v": "1"}}, {"name": "two", "labels": {"v": "2"}}]}}
    docs = [gateway_doc(), svc, se, dr,
            _we("a1", a1.port, {"app": "a", "v": "1"}, locality="eu-west/zone-a/rack-1", weight=3, network="n1"),
            _we("a2", a2.port, {"app": "a", "v": "2"}, locality="eu-west/zone-b"),
            _we("b1", b1.port, {"app": "b"}),
            vs_doc("a", ["a.example.com"], [
                {"match": [{"uri": {"prefix": "/one"}}], "route": to("a", subset="one")},
                {"match": [{"uri": {"prefix": "/two"}}], "route": to("a", subset="two")},
                {"route": to("a")}]),
            vs_doc("b", ["b.example.com"], [{"route": to("b.internal")}])]
    gw = gateway_factory(dump(*docs), ports=(80,))
    for _ in range(5):
        assert http_get(gw, 80, "/one", host="a.example.com").headers["x-backend"] == "a1"
        assert http_get(gw, 80, "/two", host="a.example.com").headers["x-backend"] == "a2"
        assert http_get(gw, 80, "/", host="b.example.com").headers["x-backend"] == "b1"
    assert {http_get(gw, 80, "/any", host="a.example.com").headers["x-backend"] for _ in range(40)} == {"a1", "a2"}
    assert "EG0005" in gw.render_result.stderr and "spec.network has no effect" in gw.render_result.stderr
    boot = yaml.safe_load(gw.bootstrap_path.read_text())
    (cl,) = [c for c in boot["static_resources"]["clusters"] if c["name"] == f"outbound|80||a.{NS}.svc.cluster.local"]
    groups = cl["load_assignment"]["endpoints"]
    assert [g.get("locality") for g in groups] == [{"region": "eu-west", "zone": "zone-a", "sub_zone": "rack-1"},
                                                   {"region": "eu-west", "zone": "zone-b", "sub_zone": ""}], groups
    assert groups[0]["lb_endpoints"][0]["load_balancing_weight"] == 3
    dump_text = gw.admin("config_dump?include_eds")
    assert '"region": "eu-west"' in dump_text and '"sub_zone": "rack-1"' in dump_text
