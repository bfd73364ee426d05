"""Shared fixtures for end-to-end tests (see harness.py for the API).

Markers ``docker`` and ``slow`` are registered in pyproject.toml.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    Backend,
    CertAuthority,
    Gateway,
    TcpEchoBackend,
    TlsBackend,
)


# --------------------------------------------------------------------------
# keep each phase's report on the item, so fixtures can tell a failed test


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _test_failed(node: pytest.Item) -> bool:
    for when in ("setup", "call"):
        rep = getattr(node, f"rep_{when}", None)
        if rep is not None and rep.failed:
            return True
    return False


# --------------------------------------------------------------------------
# fixtures


@pytest.fixture
def tmp_out(tmp_path: Path) -> Path:
    """A bundle output path that does not exist yet (``-o`` wants absent or empty)."""
    return tmp_path / "out"


class BackendFactory:
    """``backend_factory("v1", status=200, ...)`` → started ``Backend``;
    ``.tcp(name, greeting=...)`` → ``TcpEchoBackend``; ``.tls(name, cert=, key=)``
    → ``TlsBackend``. Every backend is stopped at teardown."""

    def __init__(self) -> None:
        self.created: list[Any] = []

    def _add(self, b):  # noqa: ANN001, ANN202
        self.created.append(b)
        return b.start()

    def __call__(self, name: str, **kw: Any) -> Backend:
        return self._add(Backend(name, **kw))

    def tcp(self, name: str, **kw: Any) -> TcpEchoBackend:
        return self._add(TcpEchoBackend(name, **kw))

    def tls(self, name: str, **kw: Any) -> TlsBackend:
        return self._add(TlsBackend(name, **kw))

    def stop_all(self) -> None:
        for b in reversed(self.created):
            try:
                b.stop()
            except Exception as e:  # noqa: BLE001 - keep stopping the others
                print(f"stopping {b!r}: {e!r}", file=sys.stderr)


@pytest.fixture
def backend_factory() -> Iterable[BackendFactory]:
    f = BackendFactory()
    try:
        yield f
    finally:
        f.stop_all()


class GatewayFactory:
    """``gateway_factory(yaml_or_paths, ports=(80, 443), args=[...], start=True)``
    → ``Gateway`` (started unless ``start=False``; then call ``.render()`` or
    ``.start()`` yourself). ``gateway_factory.from_bootstrap(text, ...)`` the same
    for a hand-written bootstrap. Each gets its own work directory under the
    test's tmp dir; all are stopped at teardown, and their logs printed if the
    test failed."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self.created: list[Gateway] = []

    def _workdir(self, name: str) -> Path:
        return self._tmp.mktemp(f"gw-{name}", numbered=True)

    def __call__(
        self,
        sources: Iterable[str | os.PathLike] | str | os.PathLike = (),
        *,
        ports: Iterable[int] | Mapping[int, int | None] = (80, 443),
        args: Sequence[str] = (),
        start: bool = True,
        name: str = "gateway",
        **kw: Any,
    ) -> Gateway:
        gw = Gateway(sources, ports=ports, args=args, name=name, workdir=self._workdir(name), **kw)
        self.created.append(gw)
        return gw.start() if start else gw

    def from_bootstrap(self, yaml_text: str, *, start: bool = True, name: str = "bootstrap", **kw: Any) -> Gateway:
        gw = Gateway.from_bootstrap(yaml_text, name=name, workdir=self._workdir(name), **kw)
        self.created.append(gw)
        return gw.start() if start else gw

    def finish(self, failed: bool) -> None:
        for gw in reversed(self.created):
            try:
                gw.stop()
            except Exception as e:  # noqa: BLE001
                print(f"stopping {gw!r}: {e!r}", file=sys.stderr)
        if failed:
            for gw in self.created:
                if gw.render_result is not None or gw.log_path.exists():
                    print(gw.describe_for_failure())


@pytest.fixture
def gateway_factory(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterable[GatewayFactory]:
    f = GatewayFactory(tmp_path_factory)
    try:
        yield f
    finally:
        f.finish(_test_failed(request.node))


@pytest.fixture(scope="session")
def cert_authority() -> CertAuthority:
    """One throw-away CA per session (``.issue(cn, sans)`` → IssuedCert)."""
    return CertAuthority("envoygen-test-ca")
