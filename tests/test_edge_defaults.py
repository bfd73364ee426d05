"""Edge hardening applied by default (translate/hardening.py, docs/hardening.md), seen in the stock
Envoy's config_dump and by clients:

- gateway listeners and clusters buffer at most 32 KiB per connection (Envoy's edge guidance;
  Envoy's default is 1 MiB, which Istio keeps);
- the overload manager watches the heap (fixed_heap, ``--max-heap``, 2 GiB by default): shrink at
  95 %, stop accepting requests at 98 %; ``--max-heap 0`` leaves only Istio's connection limit;
  a heap limit below what Envoy uses makes it refuse requests (the actions are live);
- a 32 KiB buffer does not change what a client observes: a 100 KiB POST still reaches the backend
  whole, and is still retried on connect failure (Istio's default retry policy), because every
  virtual host buffers request bodies up to 1 MiB for retries.
"""

from __future__ import annotations

import hashlib
import os

from harness import free_port, http_get, run_envoygen, wait_until
from test_http_policies import H, dump, gateway_doc, se_doc, to, vs_doc

KIB = 1024


def _docs(*services: tuple[str, list[int]]) -> str:
    http = [{"match": [{"uri": {"prefix": f"/{name}"}}], "route": to(name)} for name, _ in services]
    return dump(gateway_doc(), vs_doc(http), *(se_doc(name, ports) for name, ports in services))


def _dynamic(dump_: dict, kind: str) -> list[dict]:
    for c in dump_["configs"]:
        if c["@type"].endswith(kind):
            return c.get("static_listeners") or c.get("static_clusters") or []
    return []


def _bootstrap(gw) -> dict:  # noqa: ANN001
    for c in gw.config_dump()["configs"]:
        if c["@type"].endswith("BootstrapConfigDump"):
            return c["bootstrap"]
    raise AssertionError("no bootstrap in config_dump")


def _gateway_listeners(gw) -> list[dict]:  # noqa: ANN001
    listeners = [entry["listener"] for entry in _dynamic(gw.config_dump(), "ListenersConfigDump")]
    return [l for l in listeners if l["address"]["socket_address"]["port_value"] == gw.port_map[80]]


def test_default_render_sets_buffer_limits_and_overload_manager(backend_factory, gateway_factory) -> None:
    app = backend_factory("app")
    gw = gateway_factory(_docs(("app", [app.port])), ports=(80,), args=["--max-heap", "1536Mi"])
    assert http_get(gw, 80, "/app", host=H).status == 200

    [listener] = _gateway_listeners(gw)
    assert listener["per_connection_buffer_limit_bytes"] == 32 * KIB
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["request_headers_timeout"] == "10s"
    # Istio's observable behaviour is kept: underscores forwarded, no HTTP/2 limits, slashes kept
    assert "headers_with_underscores_action" not in hcm.get("common_http_protocol_options", {})
    assert "http2_protocol_options" not in hcm
    assert hcm.get("merge_slashes", False) is False
    vhosts = {vh["name"]: vh for vh in hcm["route_config"]["virtual_hosts"]}
    assert vhosts[f"{H}:80"]["request_body_buffer_limit"] == str(1024 * KIB)  # uint64: a string in JSON

    clusters = [entry["cluster"] for entry in _dynamic(gw.config_dump(), "ClustersConfigDump")]
    app_cluster = next(c for c in clusters if c["name"] == f"outbound|80||app.test.svc.cluster.local")
    assert app_cluster["per_connection_buffer_limit_bytes"] == 32 * KIB

    overload = _bootstrap(gw)["overload_manager"]
    monitors = {m["name"]: m["typed_config"] for m in overload["resource_monitors"]}
    assert monitors["envoy.resource_monitors.fixed_heap"]["max_heap_size_bytes"] == str(1536 * KIB * KIB)
    assert "envoy.resource_monitors.global_downstream_max_connections" in monitors  # as Istio
    actions = {a["name"]: a["triggers"][0] for a in overload["actions"]}
    assert actions["envoy.overload_actions.shrink_heap"]["threshold"]["value"] == 0.95
    assert actions["envoy.overload_actions.stop_accepting_requests"]["threshold"]["value"] == 0.98
    assert {t["name"] for t in actions.values()} == {"envoy.resource_monitors.fixed_heap"}


def test_max_heap_zero_leaves_only_the_connection_limit(backend_factory, gateway_factory) -> None:
    app = backend_factory("app")
    gw = gateway_factory(_docs(("app", [app.port])), ports=(80,), args=["--max-heap", "0"])
    assert http_get(gw, 80, "/app", host=H).status == 200
    overload = _bootstrap(gw)["overload_manager"]
    assert [m["name"] for m in overload["resource_monitors"]] == ["envoy.resource_monitors.global_downstream_max_connections"]
    assert not overload.get("actions")


def test_heap_limit_below_envoys_heap_stops_requests(backend_factory, gateway_factory) -> None:
    """The heap actions are live: with a limit far below what Envoy already uses, the gateway refuses
    requests (503, the backend sees none) while readiness, which bypasses the overload manager, answers."""
    app = backend_factory("app")
    gw = gateway_factory(_docs(("app", [app.port])), ports=(80,), args=["--max-heap", "1Mi"])
    active = "overload.envoy.overload_actions.stop_accepting_requests.active"
    wait_until(lambda: gw.stats(active).get(active) == 1, timeout=5, message="the action never became active")
    status, _, body = http_get(gw, 80, "/app", host=H)
    assert status == 503 and b"overload" in body.lower(), (status, body)
    assert app.count == 0
    assert gw.is_ready()


def test_large_post_reaches_the_backend_and_is_retried_on_connect_failure(backend_factory, gateway_factory) -> None:
    alive = backend_factory("alive")
    dead = free_port()  # nothing listens: connect failure, retried by Istio's default policy
    gw = gateway_factory(_docs(("app", [alive.port]), ("halfdead", [dead, alive.port])), ports=(80,))
    body = os.urandom(100 * KIB).hex().encode()[: 100 * KIB]  # 100 KiB, > 32 KiB buffer limit
    digest = hashlib.sha256(body).hexdigest()

    status, _, _ = http_get(gw, 80, "/app/upload", host=H, method="POST", body=body)
    assert status == 200
    seen = alive.requests[-1]
    assert seen["path"] == "/app/upload" and hashlib.sha256(seen["body_bytes"]).hexdigest() == digest
    big = body * 40  # 4000 KiB: streamed with flow control, never buffered whole
    status, _, _ = http_get(gw, 80, "/app/big", host=H, method="POST", body=big, timeout=30)
    assert status == 200 and alive.requests[-1]["body_bytes"] == big

    alive.reset()
    statuses = [http_get(gw, 80, f"/halfdead/{i}", host=H, method="POST", body=body).status for i in range(12)]
    assert statuses.count(200) >= 11, statuses
    assert all(hashlib.sha256(r["body_bytes"]).hexdigest() == digest for r in alive.requests)
    retried = [r for r in alive.requests if r["headers"].get("x-envoy-attempt-count", "1") != "1"]
    stats = gw.stats("halfdead")
    retries = sum(v for k, v in stats.items() if k.endswith(".upstream_rq_retry"))
    assert retried and retries >= 1, (len(alive.requests), stats)
    assert sum(v for k, v in stats.items() if "retry_overflow" in k or "body_exceeded" in k) == 0


def test_bad_max_heap_is_a_usage_error(tmp_path) -> None:
    src = tmp_path / "in.yaml"
    src.write_text(_docs(("app", [8080])))
    for bad in ("12x", "-1", "Gi", "1.5Gi"):
        p = run_envoygen(["render", "-f", src, "-o", tmp_path / "out", "--max-heap", bad])
        assert p.returncode == 2, (bad, p.stderr)
        assert "--max-heap" in p.stderr and "is not a size" in p.stderr, p.stderr
        assert not (tmp_path / "out").exists()
    p = run_envoygen(["render", "-f", src, "-o", tmp_path / "out", "--max-heap", "3G"])
    assert p.returncode == 0, p.stderr
    assert "max_heap_size_bytes: 3000000000" in (tmp_path / "out" / "envoy.yaml").read_text()


def test_bootstrap_too_big_for_the_heap_limit_is_a_warning(tmp_path) -> None:
    """EG0403: Envoy's heap once a bootstrap is loaded is ~30x its YAML bytes, ~40x its JSON bytes
    (bench/startup.py at 10,000 hosts); near --max-heap the overload manager would act from the start."""
    src = tmp_path / "in.yaml"
    src.write_text(_docs(("app", [8080])))
    size = None
    for fmt, limit, warned in (("yaml", "2Gi", False), ("yaml", "100Ki", True), ("json", "100Ki", True),
                               ("yaml", "0", False)):
        out = tmp_path / f"out-{fmt}-{limit}"
        p = run_envoygen(["render", "-f", src, "-o", out, "--max-heap", limit, "--bootstrap-format", fmt])
        assert p.returncode == 0 and out.is_dir(), p.stderr  # a warning: the bundle is written
        assert ("EG0403" in p.stderr) == warned, (fmt, limit, p.stderr)
        if warned:
            size = (out / f"envoy.{fmt}").stat().st_size
            assert f"{size / 1e6:.1f} MB bootstrap" in p.stderr and "raise --max-heap" in p.stderr, p.stderr
    assert size and size * 40 >= 0.8 * 100 * KIB  # the control: this bootstrap is big for 100 KiB


def test_large_h2c_upload_and_download_under_both_profiles(backend_factory, gateway_factory, tmp_path) -> None:
    """HTTP/2 flow control with a 32 KiB connection buffer: a 4000 KiB POST reaches the backend whole
    and its 4000 KiB+ echo comes back, with Envoy's stream windows (default) and with the edge
    profile's 64 KiB / 1 MiB windows."""
    import json
    import subprocess

    app = backend_factory("app")
    body = os.urandom(2000 * KIB).hex().encode()
    (tmp_path / "body").write_bytes(body)
    for profile in ("default", "edge"):
        gw = gateway_factory(_docs(("app", [app.port])), ports=(80,), name=profile, args=["--profile", profile])
        p = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-H", f"Host: {H}", "--data-binary",
                            f"@{tmp_path / 'body'}", "-o", str(tmp_path / "answer"), "-w", "%{http_code} %{http_version}",
                            f"http://127.0.0.1:{gw.port_map[80]}/app/h2"], capture_output=True, text=True, timeout=60)
        assert p.stdout == "200 2", (profile, p.stdout, p.stderr)
        assert app.requests[-1]["body_bytes"] == body, profile
        assert json.loads((tmp_path / "answer").read_bytes())["body"] == body.decode(), profile
