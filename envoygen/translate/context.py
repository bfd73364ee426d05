"""What every translation function needs: the resolved view, the options that shape the IR (ports, access log), findings, and the secrets registered so far."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    access_log: str | None = None  # overrides meshConfig.accessLogFile when set


@dataclass
class Context:
    view: View
    options: Options
    findings: Findings
    secrets: dict[str, ir.Secret] = field(default_factory=dict)  # by SDS name

    @property
    def resources(self) -> Resources:
        return self.view.resources

    @property
    def workload(self) -> Workload:
        return self.view.workload
