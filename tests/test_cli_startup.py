"""The CLI starts light: --help, --version and proxy-config import neither the
pipeline nor the heavy libraries it needs (pydantic, Jinja, cryptography, the
Docker SDK). Asserted by what is imported, not by time (docs/architecture.md
records the timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("pydantic", "jinja2", "cryptography", "docker", "envoygen.pipeline", "envoygen.model",
         "envoygen.translate", "envoygen.resolve", "envoygen.credentials", "envoygen.certs", "re2")

PROBE = """
import json, sys
from envoygen.cli import cli
try:
    cli.main(args=sys.argv[1:], prog_name="envoygen", standalone_mode=False)
except SystemExit:
    pass
print("\\n@@" + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
      {"pydantic", "jinja2", "cryptography", "docker", "envoygen", "re2"})))
"""


def imported_after(*args: str) -> set[str]:
    p = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert p.returncode == 0, p.stderr
    return set(json.loads(p.stdout.rpartition("\n@@")[2]))


def heavy(mods: set[str]) -> list[str]:
    return sorted(m for m in mods if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["render", "--help"], ["build", "--help"]])
def test_help_and_version_import_nothing_heavy(args: list[str]) -> None:
    assert heavy(imported_after(*args)) == []


def test_proxy_config_imports_nothing_heavy(tmp_path: Path) -> None:
    out = tmp_path / "b"
    subprocess.run([sys.executable, "-m", "envoygen", "render", "-q", "-f", "samples/coolstore", "-o", str(out)],
                   check=True, capture_output=True, cwd=REPO, timeout=120)
    for what in ("listeners", "routes", "clusters", "endpoints"):
        assert heavy(imported_after("proxy-config", what, str(out))) == []


def test_the_probe_sees_the_pipeline_when_it_runs(tmp_path: Path) -> None:
    """The detector is real: render does import the pipeline and pydantic."""
    mods = imported_after("render", "-q", "-f", "samples/coolstore", "-o", str(tmp_path / "b"))
    assert "envoygen.pipeline" in mods and "pydantic" in mods


def test_lazy_certs_command_is_listed_with_its_own_help() -> None:
    """--help lists `certs` without importing it, with the text its docstring starts with."""
    from click.testing import CliRunner

    from envoygen.certs_command import certs
    from envoygen.cli import LAZY_COMMANDS, cli

    text = CliRunner().invoke(cli, ["--help"]).output
    assert "certs" in text
    assert LAZY_COMMANDS["certs"][2] == certs.help.split("\n")[0].strip()
    r = CliRunner().invoke(cli, ["certs", "--help"])
    assert r.exit_code == 0 and "--server" in r.output
