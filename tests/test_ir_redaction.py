"""Private keys never leave their 0600 file: not through repr/str of the IR, not
through `envoygen ir`, not in a traceback's locals printed by accident."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from envoygen import ir
from envoygen.pipeline import Request, translate_inputs

REPO = Path(__file__).resolve().parent.parent


def key_bytes() -> list[bytes]:
    """The private keys the coolstore-mtls sample's Secrets hold, as the IR carries them."""
    compiled = translate_inputs(Request((str(REPO / "samples/coolstore-mtls"),)))
    return [c for s in compiled.bundles[0].bootstrap.secrets for n, c in s.files if ir.is_private_key_file(n)]


def test_repr_of_the_ir_shows_no_key_bytes() -> None:
    compiled = translate_inputs(Request((str(REPO / "samples/coolstore-mtls"),)))
    boot = compiled.bundles[0].bootstrap
    keys = [c for s in boot.secrets for n, c in s.files if ir.is_private_key_file(n)]
    assert keys and all(b"PRIVATE KEY" in k for k in keys)  # the IR does carry them, to be written 0600
    for text in (repr(boot), str(boot), repr(boot.secrets), str(boot.secrets[0])):
        for k in keys:
            body = k.decode().split("\n")[1]  # a line of the base64 body
            assert body not in text
        assert "PRIVATE KEY" not in text
    assert "redacted" in repr(boot.secrets)


def test_envoygen_ir_prints_no_key_bytes() -> None:
    p = subprocess.run([sys.executable, "-m", "envoygen", "ir", "-f", "samples/coolstore-mtls"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    files = [f for w in data.values() for s in w["ir"]["secrets"] for f in s["files"]]
    assert any(f["name"] == "tls.key" and f.get("redacted") and len(f["sha256"]) == 64 for f in files)
    keys = key_bytes()
    assert keys
    for k in keys:
        assert k.decode().split("\n")[1] not in p.stdout
    assert "PRIVATE KEY" not in p.stdout + p.stderr
