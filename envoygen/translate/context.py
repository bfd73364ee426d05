"""What every translation function needs: the resolved view, the options that shape the IR (ports, access log,
hardening profile), findings, and the secrets registered so far."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from .. import ir
from ..diagnostics import Findings
from ..model import Resources
from ..resolve import View
from ..workloads import Workload
from .hardening import DEFAULT_MAX_HEAP, Hardening, hardening_for


@dataclass(frozen=True)
class Options:
    port_map: dict[int, int] = field(default_factory=dict)
    admin_port: int = 15000
    readiness_port: int = 15021
    stats_port: int = 15090
    access_log: str | None = None  # overrides meshConfig.accessLogFile when set
    profile: str = "default"  # hardening profile: default | edge (translate/hardening.py)
    max_heap: int = DEFAULT_MAX_HEAP  # bytes for the overload manager's heap actions; 0: none


@dataclass
class Context:
    view: View
    options: Options
    findings: Findings
    secrets: dict[str, ir.Secret] = field(default_factory=dict)  # by SDS name
    hash_policies: dict[tuple[str, int, str, int], tuple[ir.HashPolicy, ...]] = field(default_factory=dict)  # http._hash_policies_of

    @cached_property
    def hardening(self) -> Hardening:
        return hardening_for(self.options.profile, self.options.max_heap)

    @property
    def resources(self) -> Resources:
        return self.view.resources

    @property
    def workload(self) -> Workload:
        return self.view.workload
