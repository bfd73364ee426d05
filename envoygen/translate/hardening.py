"""Edge hardening: every value envoygen sets beyond what Istio's gateway emits, decided here.

Two profiles (``--profile``), compared setting by setting in docs/hardening.md:

- ``default``: only what a well-behaved client cannot observe, on top of Istio's
  behaviour: a request-headers timeout (10 s), 32 KiB per-connection buffer
  limits on gateway listeners and clusters (Envoy's edge guidance), and the
  overload manager's heap actions sized by ``--max-heap``.  A 32 KiB buffer
  would stop Envoy from buffering a larger request body for a retry (Istio's
  default retries on connect failure), so every virtual host buffers request
  bodies up to 1 MiB, Envoy's default connection buffer limit (what Istio
  retries with).
- ``edge``: also what an Istio user would observe, with the values of Istio's
  own EDGE connection-settings profile (pilot/pkg/networking/core/
  connection_settings.go, ``applyEdgeProfileDefaults``), which are those of
  Envoy's "Configuring Envoy as an edge proxy": headers with underscores
  rejected (400), HTTP/2 limited to 100 concurrent streams with 64 KiB stream
  and 1 MiB connection windows, stream idle and request timeouts of 5 minutes,
  an idle timeout of an hour, slashes merged and escaped slashes unescaped
  with a redirect.

The templates only place these values; none is decided in a template.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import ir

PROFILES = ("default", "edge")
DEFAULT_MAX_HEAP = 2 * 1024**3  # Envoy's edge example: 2 GiB
KIB = 1024


@dataclass(frozen=True)
class Hardening:
    profile: str
    http: ir.HttpHardening
    listener_buffer_limit: int | None  # per_connection_buffer_limit_bytes of gateway listeners
    cluster_buffer_limit: int | None  # per_connection_buffer_limit_bytes of upstream clusters
    request_body_buffer_limit: int | None  # per virtual host: how much request body Envoy buffers for retries
    overload: ir.Overload | None


def overload(max_heap: int) -> ir.Overload | None:
    """Envoy's edge example: shrink the heap at 95 % of ``max_heap``, stop accepting requests at 98 %."""
    if max_heap <= 0:
        return None
    return ir.Overload(max_heap_bytes=max_heap, shrink_heap_at=0.95, stop_accepting_requests_at=0.98)


# Default: a client must finish its request headers within 10 s (Istio sets no limit, so a client
# dribbling headers held a connection forever); no well-behaved client needs that long.
# Edge: Istio's EDGE profile values (connection_settings.go applyEdgeProfileDefaults), but the
# request-headers timeout: envoygen's 10 s is already stricter than the profile's 60 s.
DEFAULT_HTTP = ir.HttpHardening(request_headers_timeout=10.0)
EDGE_HTTP = ir.HttpHardening(
    request_headers_timeout=10.0,
    stream_idle_timeout=300.0,
    request_timeout=300.0,
    idle_timeout=3600.0,
    headers_with_underscores_action="REJECT_REQUEST",
    merge_slashes=True,
    path_with_escaped_slashes_action="UNESCAPE_AND_REDIRECT",
    http2_max_concurrent_streams=100,
    http2_initial_stream_window_size=64 * KIB,
    http2_initial_connection_window_size=1024 * KIB,
)


def hardening_for(profile: str = "default", max_heap: int = DEFAULT_MAX_HEAP) -> Hardening:
    if profile not in PROFILES:
        raise ValueError(f"unknown hardening profile {profile!r}; known: {', '.join(PROFILES)}")
    return Hardening(
        profile=profile,
        http=EDGE_HTTP if profile == "edge" else DEFAULT_HTTP,
        listener_buffer_limit=32 * KIB,
        cluster_buffer_limit=32 * KIB,
        request_body_buffer_limit=1024 * KIB,
        overload=overload(max_heap),
    )
