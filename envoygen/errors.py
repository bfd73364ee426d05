"""Exceptions the CLI maps onto exit codes.

Every domain error subclasses :class:`click.ClickException`, so commands need no
try/except: click prints ``message`` and exits with ``exit_code``.

Exit codes (DESIGN.md): 0 ok, 1 invalid input, 2 usage, 3 environment.
"""

from __future__ import annotations

import click

EXIT_INVALID_INPUT = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3


class EnvoygenError(click.ClickException):
    """Base class; exit 1 (invalid input) unless a subclass says otherwise."""

    exit_code = EXIT_INVALID_INPUT

    def show(self, file=None) -> None:  # noqa: ANN001 - click's signature
        click.echo(f"error: {self.format_message()}", err=True)


class InputError(EnvoygenError):
    """The user's input is wrong (YAML, Istio semantics, credentials, OUT dir)."""

    exit_code = EXIT_INVALID_INPUT


class EnvironmentProblem(EnvoygenError):
    """Something outside the input is missing: Docker, the Envoy binary, disk."""

    exit_code = EXIT_ENVIRONMENT


class FindingsError(InputError):
    """Raised with the analyzer's findings when at least one is an error.

    The findings themselves are printed by the CLI, one per line, before this
    error's one-line summary.
    """

    def __init__(self, findings: list, summary: str | None = None) -> None:
        self.findings = findings
        n = sum(1 for f in findings if f.severity == "error")
        super().__init__(summary or f"{n} error(s) in the input; nothing was written")

    def show(self, file=None) -> None:  # noqa: ANN001
        for f in self.findings:
            click.echo(f.format(), err=True)
        super().show(file)
