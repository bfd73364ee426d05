"""Private keys stay in their 0600 files (issue 13): every other output is grepped for them.

The inputs are samples/coolstore-mtls (keys in Kubernetes Secrets, MUTUAL) and
samples/coolstore-https (keys from ``--credentials-dir certs``). Each key is
looked for in every form a leak could take (``needles``): the PEM's base64 body
lines, the base64 of the whole PEM (a Secret's ``data``), the PKCS#8 DER and the
raw private scalar, in binary and in hex. The control test finds each needle
where the key is meant to be, so a search that finds nothing elsewhere means
something.

Outputs searched: every file of the bundle but the key files (bootstrap in YAML
and JSON, manifest.json, SDS files, which must point at files, never inline a
key, Dockerfile, certificates); stdout and stderr of render, validate, ``ir``,
every ``proxy-config`` view in every format, and the commands issue 12 adds
(diff, graph, manifests: each is skipped, saying so, while the CLI lacks it);
``envoygen run``'s output at debug level and the running Envoy's admin
``config_dump`` and ``certs``; and the layers of the image ``envoygen build``
makes (``docker save``): only the layer holding the bundle's key files may hold
the keys, and there only in those files.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from harness import ENVOYGEN_CMD, free_ports, run_envoygen, wait_until
from image_fixtures import base_image, docker_client, reaper, unique  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parent.parent
SAMPLES = {"coolstore-mtls": [], "coolstore-https": ["--credentials-dir", str(REPO / "certs")]}
KEY_FILE_NAMES = {"tls.key"}


# --------------------------------------------------------------------------
# the keys and their forms


def _keys_of(sample: str) -> list[bytes]:
    """PEM private keys the sample's gateway uses: from its Secrets, else certs/<credentialName>/."""
    pems: list[bytes] = []
    names: set[str] = set()
    for f in sorted((REPO / "samples" / sample).glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if not isinstance(doc, dict):
                continue
            if doc.get("kind") == "Secret" and "tls.key" in (doc.get("data") or {}):
                pems.append(base64.b64decode(doc["data"]["tls.key"]))
            for server in (doc.get("spec") or {}).get("servers", []) if doc.get("kind") == "Gateway" else []:
                names.add((server.get("tls") or {}).get("credentialName", ""))
    if not pems:
        pems = [(REPO / "certs" / n / "tls.key").read_bytes() for n in sorted(names)
                if (REPO / "certs" / n / "tls.key").exists()]
    return pems


def needles(pem: bytes) -> dict[str, bytes]:
    """Forms of one key a leak could take, each distinctive (no shared PEM armour)."""
    key = serialization.load_pem_private_key(pem, password=None)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    scalar = key.private_numbers().private_value.to_bytes((key.key_size + 7) // 8, "big")  # type: ignore[union-attr]
    lines = [ln for ln in pem.decode().splitlines() if ln and not ln.startswith("-----")]
    b64_pem = base64.b64encode(pem).decode()
    out = {f"pem line {i}": ln.encode() for i, ln in enumerate(lines) if len(ln) >= 40}
    out["base64 of the pem"] = b64_pem[40:100].encode()  # after the common '-----BEGIN PRIVATE KEY-----'
    out["pkcs8 der"] = der
    out["private scalar"] = scalar
    out["private scalar hex"] = scalar.hex().encode()
    out["private scalar HEX"] = scalar.hex().upper().encode()
    return out


@functools.lru_cache(maxsize=None)
def all_needles(sample: str) -> dict[str, bytes]:
    return {f"key {i} {name}": n for i, pem in enumerate(_keys_of(sample)) for name, n in needles(pem).items()}


def leaks(data: bytes | str, found_in: str, sample: str) -> list[str]:
    blob = data.encode() if isinstance(data, str) else data
    return [f"{found_in}: {name}" for name, n in all_needles(sample).items() if n in blob]


# --------------------------------------------------------------------------
# rendered bundles (once per sample and format)


@pytest.fixture(scope="module", params=sorted(SAMPLES))
def bundle(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict]:
    sample = request.param
    outs: dict[str, subprocess.CompletedProcess] = {}
    root = tmp_path_factory.mktemp(f"leaks-{sample}")
    for fmt in ("yaml", "json"):
        p = run_envoygen(["render", "-f", f"samples/{sample}", "-o", str(root / fmt), "--bootstrap-format", fmt,
                          *SAMPLES[sample]], cwd=REPO)
        assert p.returncode == 0, p.stderr
        outs[f"render --bootstrap-format {fmt}"] = p
    return sample, root, outs


def test_needles_find_the_keys_where_they_belong(bundle) -> None:  # noqa: ANN001
    """The control: every needle is found in the forms of the bundle's key files (0600),
    so the searches below can fail."""
    sample, root, _ = bundle
    key_files = sorted(p for p in (root / "yaml").rglob("*") if p.name in KEY_FILE_NAMES)
    assert key_files and len(_keys_of(sample)) >= 1
    forms = b""
    for p in key_files:
        assert p.stat().st_mode & 0o777 == 0o600, p
        pem = p.read_bytes()
        der = serialization.load_pem_private_key(pem, None).private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        forms += b"|".join([pem, base64.b64encode(pem), der, der.hex().encode(), der.hex().upper().encode()]) + b"|"
    missing = [name for name, n in all_needles(sample).items() if n not in forms]
    assert missing == []
    assert len(all_needles(sample)) >= 7


def test_bundle_files_hold_no_key_but_the_key_files(bundle) -> None:  # noqa: ANN001
    sample, root, outs = bundle
    found: list[str] = []
    checked = 0
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in KEY_FILE_NAMES:
            found += leaks(p.read_bytes(), str(p.relative_to(root)), sample)
            checked += 1
    for what, proc in outs.items():
        found += leaks(proc.stdout + proc.stderr, what, sample)
    assert found == []
    assert checked >= 8
    # SDS files point at the key by path; nothing is inlined
    for sds in (root / "yaml" / "sds").glob("*.yaml"):
        text = sds.read_text()
        assert "inline_bytes" not in text and "inline_string" not in text, sds
    assert any("filename" in s.read_text() and "tls.key" in s.read_text() for s in (root / "yaml" / "sds").glob("*"))
    boot = (root / "json" / "envoy.json").read_text()
    assert "PRIVATE KEY" not in boot and "inline" not in boot


# --------------------------------------------------------------------------
# CLI outputs

VIEWS = ["listeners", "routes", "clusters", "endpoints", "secrets"]


def _has_command(name: str) -> bool:
    return run_envoygen([name, "--help"], timeout=60).returncode == 0


def test_validate_and_ir_print_no_key(bundle) -> None:  # noqa: ANN001
    sample, _, _ = bundle
    found = []
    for cmd in (["validate"], ["ir"]):
        p = run_envoygen([*cmd, "-f", f"samples/{sample}", *SAMPLES[sample]], cwd=REPO)
        assert p.returncode == 0, p.stderr
        found += leaks(p.stdout + p.stderr, " ".join(cmd), sample)
    assert found == []


@pytest.mark.parametrize("fmt", ["table", "json", "yaml"])
def test_proxy_config_prints_no_key(bundle, fmt: str) -> None:  # noqa: ANN001
    sample, root, _ = bundle
    found = []
    for view in VIEWS:
        p = run_envoygen(["proxy-config", view, str(root / "yaml"), "-o", fmt])
        assert p.returncode == 0, (view, p.stderr)
        found += leaks(p.stdout + p.stderr, f"proxy-config {view} -o {fmt}", sample)
    assert found == []
    secrets = run_envoygen(["proxy-config", "secrets", str(root / "yaml"), "-o", "json"]).stdout
    assert "webapp-credential" in secrets  # the view does describe the secrets it keeps the keys of


def _issue12_outputs(command: str, root: Path, tmp: Path) -> tuple[subprocess.CompletedProcess, list[Path]]:
    a, b = root / "yaml", root / "json"
    if command == "diff":
        return run_envoygen(["diff", str(a), str(b)]), []
    if command == "graph":
        html = tmp / "graph.html"
        return run_envoygen(["graph", str(a), "-o", str(html)]), [html]
    out = tmp / "manifests"
    return run_envoygen(["manifests", str(a), "--image", "example/gw:1", "--replicas", "2", "-o", str(out)]), [out]


@pytest.mark.parametrize("command", ["diff", "graph", "manifests"])
def test_issue12_commands_print_no_key(bundle, command: str, tmp_path: Path) -> None:  # noqa: ANN001
    """``manifests`` writes Kubernetes Secrets, which hold keys by design (base64 in
    ``data``); every other document and file, and the output, must not."""
    if not _has_command(command):
        pytest.skip(f"`envoygen {command}` does not exist yet (issue 12); this test covers it once it does")
    sample, root, _ = bundle
    p, written = _issue12_outputs(command, root, tmp_path)
    assert p.returncode in (0, 1), p.stderr  # diff: 1 = different
    found = leaks(p.stdout + p.stderr, f"envoygen {command} output", sample)
    files = [f for w in written for f in ([w] if w.is_file() else sorted(w.rglob("*"))) if f.is_file()]
    assert written == [] or files, f"envoygen {command} wrote nothing"
    for f in files:
        if command == "manifests" and f.suffix in (".yaml", ".yml"):
            for doc in yaml.safe_load_all(f.read_text()):
                if isinstance(doc, dict) and doc.get("kind") != "Secret":
                    found += leaks(yaml.safe_dump(doc), f"{f.name} {doc.get('kind')}", sample)
        else:
            found += leaks(f.read_bytes(), f.name, sample)
    assert found == []


# --------------------------------------------------------------------------
# envoygen run: its output at debug level, and what the running Envoy's admin shows


def test_run_output_and_admin_show_no_key(bundle, tmp_path: Path) -> None:  # noqa: ANN001
    import http.client

    sample, _, _ = bundle
    bind, admin, ready, stats = free_ports(4)
    cmd = [*ENVOYGEN_CMD, "run", "-f", f"samples/{sample}", *SAMPLES[sample], "--port-map", f"443={bind}",
           "--admin-port", str(admin), "--readiness-port", str(ready), "--stats-port", str(stats),
           "--log-level", "debug"]
    out, err = tmp_path / "run.out", tmp_path / "run.err"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            def admin_get(path: str) -> str | None:
                try:
                    c = http.client.HTTPConnection("127.0.0.1", admin, timeout=2)
                    c.request("GET", path)
                    r = c.getresponse()
                    return r.read().decode() if r.status == 200 else None
                except OSError:
                    return None

            wait_until(lambda: proc.poll() is not None or admin_get("/ready") is not None, 60,
                       message=f"envoygen run never became ready:\n{err.read_text()[-2000:]}")
            assert proc.poll() is None, err.read_text()[-2000:]
            dumps = {p: admin_get(p) for p in ("/config_dump?include_eds", "/certs", "/clusters", "/stats")}
            assert all(v for v in dumps.values()), {k: bool(v) for k, v in dumps.items()}
            time.sleep(0.5)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
    found = leaks(out.read_bytes() + err.read_bytes(), "envoygen run --log-level debug", sample)
    for path, text in dumps.items():
        found += leaks(text or "", f"admin {path}", sample)
    assert found == []
    assert len(err.read_bytes() + out.read_bytes()) > 1000  # debug output was produced and searched
    # the loaded secret is in the dump, its key replaced by Envoy with base64("[redacted]")
    assert base64.b64encode(b"[redacted]").decode() in (dumps["/config_dump?include_eds"] or "")


# --------------------------------------------------------------------------
# image layers


def _layers(archive: Path) -> tuple[dict[str, dict[str, bytes]], list[bytes]]:
    """``docker save`` archive → {layer path: {file path: content}}, plus the JSON blobs
    (manifest, image config with its history, labels and env)."""
    layers: dict[str, dict[str, bytes]] = {}
    meta: list[bytes] = []
    with tarfile.open(archive) as outer:
        manifest = json.loads(outer.extractfile("manifest.json").read())  # type: ignore[union-attr]
        meta.append(json.dumps(manifest).encode())
        for entry in manifest:
            meta.append(outer.extractfile(entry["Config"]).read())  # type: ignore[union-attr]
            for layer in entry["Layers"]:
                blob = outer.extractfile(layer).read()  # type: ignore[union-attr]
                files: dict[str, bytes] = {}
                with tarfile.open(fileobj=io.BytesIO(blob)) as inner:
                    for m in inner.getmembers():
                        if m.isfile():
                            files[m.name] = inner.extractfile(m).read()  # type: ignore[union-attr]
                layers[layer] = files
    return layers, meta


@pytest.mark.docker
@pytest.mark.slow
def test_image_layers_hold_keys_only_in_the_key_files(docker_client, base_image, reaper, tmp_path: Path) -> None:  # noqa: ANN001, F811
    sample = "coolstore-mtls"
    tag = reaper.image(f"envoygen-test/{unique('leaks')}:test")
    archive = tmp_path / "gw.tar"
    p = run_envoygen(["build", "-f", f"samples/{sample}", "-t", tag, "--save", str(archive)], cwd=REPO, timeout=600)
    assert p.returncode == 0, p.stderr
    found = leaks(p.stdout + p.stderr, "envoygen build output", sample)
    layers, meta = _layers(archive)
    for blob in meta:
        found += leaks(blob, "image config/manifest", sample)
    holding = {}
    for layer, files in layers.items():
        for name, content in files.items():
            hits = leaks(content, f"{layer}:{name}", sample)
            if hits:
                holding.setdefault(layer, set()).add(name)
                if os.path.basename(name) not in KEY_FILE_NAMES:
                    found += hits
    assert found == []
    assert len(holding) == 1, holding  # one layer holds the keys ...
    (names,) = holding.values()
    assert names and all(n.endswith("/tls.key") and "/certs/" in n for n in names), names  # ... in the key files
    print(f"\n[leaks/image] {len(layers)} layers, {sum(len(f) for f in layers.values())} files searched; "
          f"keys only in {sorted(names)}")
