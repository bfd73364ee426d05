"""What every translation function needs: options, the workload, the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .. import ir
from ..diagnostics import Findings
from ..model import Resources
from ..resolve import View
from ..workloads import Workload


@dataclass(frozen=True)
class Options:
    port_map: dict[int, int] = field(default_factory=dict)
    admin_port: int = 15000
    readiness_port: int = 15021
    stats_port: int = 15090
    credentials_dir: Path | None = None
    allow_expired: bool = False
    now: datetime | None = None
    access_log: str | None = None  # overrides meshConfig.accessLogFile when set


@dataclass
class Context:
    resources: Resources
    workload: Workload
    options: Options
    findings: Findings
    view: View
    secrets: dict[str, ir.Secret] = field(default_factory=dict)  # by SDS name
