"""Checks and helpers for ``envoygen run`` on the host (not the image):

* ``--resolve NAME[:PORT]=ADDR[:PORT]`` (curl's idiom): endpoints named NAME are
  pointed at ADDR for this run (the cluster becomes STATIC; the endpoint keeps NAME as its
  hostname, for SNI and Host rewriting);
* cluster endpoints that do not resolve on this host are named in a warning
  (``*.svc.cluster.local`` never does outside Kubernetes: every request to them
  would answer ``503 no healthy upstream``);
* a port that is already taken is found before Envoy starts (exit 3, environment);
* "listening" is printed once Envoy answers its readiness port, not before.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click

from .errors import EnvironmentProblem
from .yamljson import read_bootstrap


Target = tuple[str, int | None]  # (address, port or None: keep the endpoint's port)


def _split_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):  # [v6]:port
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and host.count(":") == 0:
        return host, int(port)
    return text, None


def parse_resolve(values: tuple[str, ...]) -> dict[tuple[str, int | None], Target]:
    """``NAME[:PORT]=ADDR[:PORT]`` values: without PORT on the left every port of NAME
    is meant; without PORT on the right the endpoint keeps its port."""
    out: dict[tuple[str, int | None], Target] = {}
    for v in values:
        left, sep, right = v.partition("=")
        name, port = _split_port(left)
        addr, new_port = _split_port(right)
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise click.BadParameter(f"{v!r}: expected NAME[:PORT]=ADDR[:PORT] with an IP address",
                                     param_hint="--resolve") from None
        if not sep or not name:
            raise click.BadParameter(f"{v!r}: expected NAME[:PORT]=ADDR[:PORT]", param_hint="--resolve")
        out[(name.lower().rstrip("."), port)] = (addr, new_port)
    return out


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _endpoints(boot: dict[str, Any]):  # noqa: ANN202 - (cluster, endpoint dict, socket_address) triples
    for c in (boot.get("static_resources") or {}).get("clusters") or []:
        for group in (c.get("load_assignment") or {}).get("endpoints") or []:
            for ep in group.get("lb_endpoints") or []:
                yield c, ep["endpoint"], ep["endpoint"]["address"]["socket_address"]


def _read(bootstrap: Path) -> Any:
    return read_bootstrap(bootstrap.read_text(), json_text=bootstrap.suffix == ".json")


def apply_resolve(bootstrap: Path, mapping: dict[tuple[str, int | None], Target]) -> list[str]:
    """Rewrite the bootstrap so that endpoints named in ``mapping`` use its addresses.
    Returns the names used; a name no endpoint has is a usage error."""
    boot = _read(bootstrap)
    used = set()
    for _cluster, ep, sa in _endpoints(boot):
        name = str(sa["address"]).lower().rstrip(".")
        key = (name, int(sa["port_value"])) if (name, int(sa["port_value"])) in mapping else (name, None)
        if key in mapping:
            addr, port = mapping[key]
            sa["address"] = addr
            if port is not None:
                sa["port_value"] = port
            ep.setdefault("hostname", name)
            used.add(key)
    for c in (boot.get("static_resources") or {}).get("clusters") or []:
        addrs = [sa["address"] for cl, _ep, sa in _endpoints(boot) if cl is c]
        if c.get("type") in ("STRICT_DNS", "LOGICAL_DNS") and addrs and all(_is_ip(a) for a in addrs):
            c["type"] = "STATIC"
            for k in ("dns_lookup_family", "dns_refresh_rate", "respect_dns_ttl"):
                c.pop(k, None)
    unused = sorted(f"{n}:{p}" if p else n for n, p in set(mapping) - used)
    if unused:
        raise click.BadParameter(f"no cluster endpoint is named {', '.join(unused)}", param_hint="--resolve")
    bootstrap.write_text(json.dumps(boot, indent=1))  # JSON is YAML: Envoy reads it either way
    return sorted(n for n, _ in used)


def unresolved(bootstrap: Path, timeout: float = 3.0) -> list[tuple[str, str]]:
    """(cluster, host) of DNS endpoints this host cannot resolve (looked up in parallel, bounded)."""
    boot = _read(bootstrap)
    hosts: dict[str, str] = {}
    for c, _ep, sa in _endpoints(boot):
        if not _is_ip(str(sa["address"])):
            hosts.setdefault(str(sa["address"]), c["name"])

    def resolves(h: str) -> bool:
        try:
            socket.getaddrinfo(h, None, socket.AF_INET)
            return True
        except (OSError, UnicodeError):
            return False

    if not hosts:
        return []
    pool = ThreadPoolExecutor(max_workers=min(8, len(hosts)))
    futures = {h: pool.submit(resolves, h) for h in hosts}
    deadline = time.monotonic() + timeout
    bad = []
    for h, f in futures.items():
        try:
            ok = f.result(timeout=max(0.0, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 - a lookup slower than the deadline counts as not resolving
            ok = False
        if not ok:
            bad.append((hosts[h], h))
    pool.shutdown(wait=False, cancel_futures=True)
    return bad


def check_ports_free(ports: list[tuple[str, int]]) -> None:
    """Bind each (address, port) once, as Envoy will; a taken port is an environment problem (exit 3)."""
    for addr, port in ports:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((addr, port))
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    raise EnvironmentProblem(f"cannot listen on {addr}:{port}: {exc.strerror} "
                                             "(another process has it; choose another with --port-map "
                                             "or --admin-port/--readiness-port/--stats-port)") from None
                raise EnvironmentProblem(f"cannot listen on {addr}:{port}: {exc.strerror or exc}") from None


def announce_when_ready(readiness_port: int, lines: list[str], say: Callable[[str], None],
                        timeout: float = 60.0) -> threading.Thread:
    """Print ``lines`` once http://127.0.0.1:PORT/healthz/ready answers 200 (a daemon thread)."""
    def poll() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{readiness_port}/healthz/ready", timeout=1) as r:
                    if r.status == 200:
                        for line in lines:
                            say(line)
                        return
            except OSError:
                pass
            time.sleep(0.1)
        say(f"warning: Envoy is not ready after {timeout:.0f} s (http://127.0.0.1:{readiness_port}/healthz/ready)")

    t = threading.Thread(target=poll, name="envoygen-ready", daemon=True)
    t.start()
    return t
