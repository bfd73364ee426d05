"""``envoygen graph`` (issue 12): a self-contained HTML page that renders in a real
headless browser (Debian's Chromium) with every listener in the DOM and a
non-blank screenshot; Mermaid and DOT text forms."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
import yaml

from harness import run_envoygen

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SAMPLES = {"coolstore-mtls": ["--credentials-dir", "certs"], "sni-passthrough": [], "tcp-echo": []}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("graph")
    out = {}
    for s, args in SAMPLES.items():
        extra = REPO / "samples" / s / "render.args"
        if extra.is_file():
            args = [ln.strip() for ln in extra.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        p = run_envoygen(["render", "-q", "-f", f"samples/{s}", "-o", str(root / s), *args], cwd=REPO)
        assert p.returncode == 0, p.stderr
        out[s] = root / s
    return out


def listener_names(bundle: Path) -> list[str]:
    boot = yaml.safe_load((bundle / "envoy.yaml").read_text())
    return [l["name"] for l in boot["static_resources"]["listeners"]]


def chromium(*args: str) -> subprocess.CompletedProcess:
    if not Path(CHROMIUM).exists():  # .ci/run installs it: in CI a missing browser fails
        if os.environ.get("CI"):
            pytest.fail("no chromium: .ci/run installs Debian's chromium")
        pytest.skip("no chromium (apt-get install chromium)")
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--user-data-dir=/tmp/envoygen-chromium-profile", *args],
                          capture_output=True, text=True, timeout=120)


def png_pixels_vary(png: bytes) -> int:
    """Distinct byte values in the decompressed image data (a blank page gives very few)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, data = 8, b""
    while pos < len(png):
        length, ctype = struct.unpack(">I4s", png[pos:pos + 8])
        if ctype == b"IDAT":
            data += png[pos + 8:pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(data)))


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_html_renders_in_chromium_with_every_listener(bundles, sample: str, tmp_path: Path) -> None:
    page = tmp_path / "graph.html"
    p = run_envoygen(["graph", str(bundles[sample]), "-o", str(page)])
    assert p.returncode == 0, p.stderr
    text = page.read_text()
    # self-contained: no scripts, links, images or URLs to fetch
    assert not re.search(r"https?://|<script|<link|<img|src=|@import", text), "external resource in the page"
    dom = chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr
    for name in listener_names(bundles[sample]):
        assert f'id="listener-{name}"' in dom.stdout, (name, sample)
    shot = tmp_path / "shot.png"
    r = chromium(f"--screenshot={shot}", "--window-size=1200,900", page.as_uri())
    assert r.returncode == 0 and shot.is_file(), r.stderr
    assert png_pixels_vary(shot.read_bytes()) > 30  # text and coloured boxes, not a blank page


def test_tls_modes_and_policies_are_marked(bundles) -> None:
    html = run_envoygen(["graph", str(bundles["coolstore-mtls"])]).stdout
    assert "TLS MUTUAL" in html
    passthrough = run_envoygen(["graph", str(bundles["sni-passthrough"])]).stdout
    assert "TLS PASSTHROUGH" in passthrough and "nginx.example.com" in passthrough
    echo = run_envoygen(["graph", str(bundles["tcp-echo"])]).stdout
    assert "max connections 100" in echo  # the DestinationRule's connection pool


def test_mermaid_and_dot(bundles) -> None:
    b = bundles["tcp-echo"]
    mm = run_envoygen(["graph", str(b), "--format", "mermaid"])
    assert mm.returncode == 0 and mm.stdout.startswith("flowchart LR\n")
    assert "outbound|9000||tcp-echo.tcp-echo.svc.cluster.local" in mm.stdout and " --> " in mm.stdout
    dot = run_envoygen(["graph", str(b), "--format", "dot"])
    assert dot.returncode == 0 and dot.stdout.startswith("digraph envoygen {")
    for name in listener_names(b):
        assert f'"listener:{name}"' in dot.stdout
    assert '"listener:0.0.0.0_31400" -> ' in dot.stdout
