"""``envoygen diff`` (issue 12): an added route and a rotated certificate are
reported and the exit code is 1; identical gateways exit 0; markdown for reviews."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness import run_envoygen

REPO = Path(__file__).resolve().parent.parent
ROUTE = """\
  - match: [{uri: {prefix: /api}}]
    route:
    - destination: {host: webapp, port: {number: 80}}
      headers: {request: {set: {x-api: "1"}}}
"""


def make_input(tmp: Path, name: str, extra_route: bool) -> Path:
    d = tmp / name
    shutil.copytree(REPO / "samples" / "coolstore-https", d)
    (d / "render.args").unlink()
    if extra_route:
        f = d / "gateway.yaml"
        text = f.read_text()
        assert "  http:\n" in text
        f.write_text(text.replace("  http:\n", "  http:\n" + ROUTE, 1))
    return d


def mint(dest: Path) -> Path:
    p = run_envoygen(["certs", "-q", "-o", str(dest), "--server", "webapp-credential=webapp.istioinaction.io"])
    assert p.returncode == 0, p.stderr
    return dest


def test_added_route_and_rotated_certificate_exit_1(tmp_path: Path) -> None:
    old = make_input(tmp_path, "old", extra_route=False)
    new = make_input(tmp_path, "new", extra_route=True)
    creds_a = mint(tmp_path / "creds-a")
    creds_b = tmp_path / "creds-b"
    shutil.copytree(creds_a, creds_b)  # same CA ...
    shutil.rmtree(creds_b / "webapp-credential")
    mint(creds_b)  # ... a new leaf: the rotation
    a, b = tmp_path / "a", tmp_path / "b"
    for src, creds, out in ((old, creds_a, a), (new, creds_b, b)):
        p = run_envoygen(["render", "-q", "-f", str(src), "-o", str(out), "--credentials-dir", str(creds)])
        assert p.returncode == 0, p.stderr

    p = run_envoygen(["diff", str(a), str(b)])
    assert p.returncode == 1, p.stderr
    lines = p.stdout.splitlines()
    added = [ln for ln in lines if ln.startswith("+ route ")]
    assert len(added) == 1 and " /api*: outbound|80||webapp.istioinaction.svc.cluster.local" in added[0], lines
    rotated = [ln for ln in lines if ln.startswith("~ secret kubernetes://webapp-credential:")]
    assert len(rotated) == 1 and rotated[0].count("sha256:") == 2, lines
    assert not any("secret kubernetes://webapp-credential-cacert" in ln for ln in lines), lines  # CA unchanged
    assert "PRIVATE KEY" not in p.stdout and "change(s)" in p.stderr

    md = run_envoygen(["diff", str(a), str(b), "--format", "markdown"])
    assert md.returncode == 1
    assert "### routes" in md.stdout and "### secrets" in md.stdout and "| added |" in md.stdout

    # inputs work as well as bundles: the same YAML twice is equal, exit 0
    same = run_envoygen(["diff", str(old), str(old), "--credentials-dir", str(creds_a)])
    assert (same.returncode, same.stdout) == (0, ""), same.stderr
    # and a bundle against its own input is equal too
    same = run_envoygen(["diff", str(a), str(old), "--credentials-dir", str(creds_a), "-q"])
    assert (same.returncode, same.stdout, same.stderr) == (0, "", ""), same.stdout


def test_bad_input_is_an_input_error(tmp_path: Path) -> None:
    p = run_envoygen(["diff", str(tmp_path / "nope"), str(tmp_path / "nope2")])
    assert p.returncode == 1 and "no such file" in p.stderr
