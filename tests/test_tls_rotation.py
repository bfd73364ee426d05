"""Certificate rotation in a running gateway, without a restart and without a failed request.

The bundle's SDS files point Envoy at ``OUT/certs/<credential>/`` as a watched
directory (the harness renders with ``--install-dir OUT``). The documented way to
rotate is to *move* complete files into that directory: write them elsewhere on the
same filesystem and ``os.rename`` them into place, or (as Kubernetes Secret volumes
do) point ``tls.crt``/``tls.key`` at ``..data/...`` and swap the ``..data`` symlink
atomically. While that happens a background client keeps making new TLS connections
and every one of them must succeed.
"""

from __future__ import annotations

import os
import shutil
import ssl
import threading
import time
from pathlib import Path

from cryptography import x509

from envoygen.certs import Minted, mint_ca, mint_client, mint_server, mint_server_with_mismatched_key
from harness import LOCALHOST, https_get, tls_handshake, wait_until

REPO = Path(__file__).resolve().parent.parent
CERTS = REPO / "certs"
ROOT_CA = CERTS / "_ca" / "root.crt"
DEV_INTERMEDIATE = Minted((CERTS / "_ca" / "intermediate.crt").read_bytes(), (CERTS / "_ca" / "intermediate.key").read_bytes())
HOST = "webapp.istioinaction.io"

MAX_REQUESTS = 20_000
MAX_SECONDS = 30.0


def gateway_yaml(mode: str, backend_port: int) -> list[str]:
    return [
        f"""
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {{name: coolstore-gateway, namespace: istioinaction}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: [{HOST}]
    tls: {{mode: {mode}, credentialName: webapp-credential}}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: webapp, namespace: istioinaction}}
spec:
  hosts: [{HOST}]
  gateways: [coolstore-gateway]
  http:
  - route:
    - destination: {{host: webapp, port: {{number: 80}}}}
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: webapp, namespace: istioinaction}}
spec:
  hosts: [webapp.istioinaction.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {backend_port}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""
    ]


def serial(pem: bytes) -> int:
    return x509.load_pem_x509_certificate(pem).serial_number


class Hammer:
    """Background clients: ``threads`` loops, each one new TLS connection + request per iteration,
    bounded in count (MAX_REQUESTS in all) and time (MAX_SECONDS)."""

    def __init__(self, gw, client: dict | None = None, threads: int = 4) -> None:
        self.gw = gw
        self.client = client or {}
        self.ok = 0
        self.failures: list[str] = []
        self.by_thread: list[list[int]] = [[] for _ in range(threads)]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True, name=f"tls-hammer-{i}")
                         for i in range(threads)]

    @property
    def serials(self) -> list[int]:
        """Serials seen by thread 0, in order (each thread's view is sequential)."""
        return self.by_thread[0]

    def all_serials(self) -> set[int]:
        return {s for t in self.by_thread for s in t}

    def set_client(self, client: dict) -> None:
        self.client = client

    def _run(self, i: int) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        for _ in range(MAX_REQUESTS):
            if self._stop.is_set() or time.monotonic() > deadline or self.sent >= MAX_REQUESTS:
                return
            try:
                r = https_get(self.gw, 443, "/hammer", host=HOST, ca=ROOT_CA, timeout=5, **self.client)
                with self._lock:
                    if r.status == 200:
                        self.ok += 1
                        self.by_thread[i].append(r.tls.serial)
                    else:
                        self.failures.append(f"status {r.status}")
            except (ssl.SSLError, OSError) as e:
                with self._lock:
                    self.failures.append(repr(e))

    def __enter__(self) -> "Hammer":
        for t in self._threads:
            t.start()
        wait_until(lambda: self.sent >= 5, 10, message="hammer never got going")
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self._stop.set()
        for t in self._threads:
            t.join(timeout=MAX_SECONDS + 10)

    @property
    def sent(self) -> int:
        return self.ok + len(self.failures)


def transitions(seq: list[int]) -> list[int]:
    return [s for i, s in enumerate(seq) if i == 0 or seq[i - 1] != s]


def copy_credentials(tmp: Path, names: list[str]) -> Path:
    d = tmp / "creds"
    for n in names:
        shutil.copytree(CERTS / n, d / n)
    return d


def wait_for_serial(gw, want: int, timeout: float = 10.0) -> float:
    t0 = time.monotonic()

    def check() -> bool:
        r = tls_handshake(LOCALHOST, gw.port(443), HOST, ca=ROOT_CA, probe=0)
        return r.ok and r.serial == want

    wait_until(check, timeout, interval=0.02, message=f"new certificate (serial {want:x}) never presented")
    return time.monotonic() - t0


def test_rotate_server_certificate_by_rename(tmp_path, backend_factory, gateway_factory):
    webapp = backend_factory("webapp")
    creds = copy_credentials(tmp_path, ["webapp-credential"])
    gw = gateway_factory(gateway_yaml("SIMPLE", webapp.port), ports=(443,), args=["--credentials-dir", str(creds)])
    live = gw.out_dir / "certs" / "webapp-credential"
    old = serial((live / "tls.crt").read_bytes())
    assert tls_handshake(LOCALHOST, gw.port(443), HOST, ca=ROOT_CA).serial == old

    staging = gw.workdir / "staging"  # same filesystem as OUT, outside the watched directory
    staging.mkdir()
    rounds = 5
    served = [old]
    switches = []
    with Hammer(gw) as h:
        time.sleep(0.5)  # some traffic on the old certificate first
        for i in range(rounds):
            new = mint_server([HOST], DEV_INTERMEDIATE)
            # even rounds: staged outside the watched directory; odd rounds: as docs/rotation.md does it,
            # dot-files written inside it (a write is not a move, so Envoy does not reload on it)
            crt, key = (staging / "tls.crt", staging / "tls.key") if i % 2 == 0 else \
                (live / ".tls.crt.new", live / ".tls.key.new")
            crt.write_bytes(new.cert)
            key.write_bytes(new.key)
            os.chmod(key, 0o600)
            os.rename(key, live / "tls.key")
            os.rename(crt, live / "tls.crt")
            switches.append(wait_for_serial(gw, serial(new.cert)))
            served.append(serial(new.cert))
            time.sleep(0.3)  # traffic on each new certificate
        time.sleep(0.3)
    print(f"\n[rotation/rename] {rounds} rotations; new certificate served after "
          f"{', '.join(f'{s:.3f}' for s in switches)} s (max {max(switches):.3f}s); hammer sent {h.sent} requests "
          f"({h.ok} ok, {len(h.failures)} failed)")
    assert h.failures == [], h.failures[:5]
    assert h.sent >= 100
    assert max(switches) < 5.0
    # every certificate was seen, in rotation order, and none came back (checked per client thread)
    assert h.all_serials() == set(served)
    for seq in h.by_thread:
        seen = transitions(seq)
        assert seen == [x for x in served if x in seen], [f"{x:x}" for x in seen]
        assert len(seen) >= 2, "each client thread should see the certificate change"
    assert webapp.count >= h.ok
    assert gw.running


def test_rotate_server_certificate_by_symlink_swap(tmp_path, backend_factory, gateway_factory):
    """Kubernetes Secret volume style: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>/, swap ..data."""
    webapp = backend_factory("webapp")
    creds = copy_credentials(tmp_path, ["webapp-credential"])
    gw = gateway_factory(gateway_yaml("SIMPLE", webapp.port), ports=(443,), args=["--credentials-dir", str(creds)])
    live = gw.out_dir / "certs" / "webapp-credential"
    old_pem = (live / "tls.crt").read_bytes()
    old = serial(old_pem)

    def version_dir(name: str, cert: bytes, key: bytes) -> Path:
        d = live / name
        d.mkdir()
        (d / "tls.crt").write_bytes(cert)
        (d / "tls.key").write_bytes(key)
        os.chmod(d / "tls.key", 0o600)
        return d

    def swap_data(target: str) -> None:
        tmp_link = live / "..data_tmp"
        os.symlink(target, tmp_link)
        os.rename(tmp_link, live / "..data")  # atomic replace of the symlink

    # Convert to the symlink layout with the same content (no change for clients).
    version_dir("..v1", old_pem, (live / "tls.key").read_bytes())
    swap_data("..v1")
    for f in ("tls.crt", "tls.key"):
        os.symlink(f"..data/{f}", live / f"{f}.tmp")
        os.rename(live / f"{f}.tmp", live / f)
    time.sleep(0.2)
    assert tls_handshake(LOCALHOST, gw.port(443), HOST, ca=ROOT_CA).serial == old

    new = mint_server([HOST], DEV_INTERMEDIATE)
    version_dir("..v2", new.cert, new.key)
    with Hammer(gw) as h:
        time.sleep(0.5)
        swap_data("..v2")
        switch = wait_for_serial(gw, serial(new.cert))
        time.sleep(0.5)
    print(f"\n[rotation/symlink] new certificate served after {switch:.3f}s; hammer sent {h.sent} requests "
          f"({h.ok} ok, {len(h.failures)} failed)")
    assert h.failures == [], h.failures[:5]
    assert h.sent >= 20
    assert h.all_serials() == {old, serial(new.cert)}
    for seq in h.by_thread:
        assert transitions(seq) in ([old, serial(new.cert)], [old], [serial(new.cert)]), "old certificate came back"
    assert transitions(h.serials) == [old, serial(new.cert)]


def _client_ok(gw, client: dict) -> bool:
    try:
        return https_get(gw, 443, "/probe", host=HOST, ca=ROOT_CA, timeout=5, **client).status == 200
    except (ssl.SSLError, OSError):
        return False


def test_rotate_client_ca_for_mutual(tmp_path, backend_factory, gateway_factory):
    """MUTUAL: trust old+new CA (bundle), move clients to the new CA, then drop the old CA — no failed request."""
    webapp = backend_factory("webapp")
    creds = copy_credentials(tmp_path, ["webapp-credential"])
    gw = gateway_factory(gateway_yaml("MUTUAL", webapp.port), ports=(443,), args=["--credentials-dir", str(creds)])
    live = gw.out_dir / "certs" / "webapp-credential"
    old_client = {"client_cert": CERTS / "webapp-client" / "tls.crt", "client_key": CERTS / "webapp-client" / "tls.key"}
    new_ca = mint_ca("rotated Root CA")
    nc = mint_client("new-client", new_ca)
    (tmp_path / "new-client.crt").write_bytes(nc.cert)
    (tmp_path / "new-client.key").write_bytes(nc.key)
    new_client = {"client_cert": tmp_path / "new-client.crt", "client_key": tmp_path / "new-client.key"}
    assert _client_ok(gw, old_client)
    assert not _client_ok(gw, new_client)

    staging = gw.workdir / "staging"
    staging.mkdir()
    with Hammer(gw, old_client) as h:
        # step 1: trust both CAs
        (staging / "ca.crt").write_bytes(ROOT_CA.read_bytes() + new_ca.cert)
        t0 = time.monotonic()
        os.rename(staging / "ca.crt", live / "ca.crt")
        wait_until(lambda: _client_ok(gw, new_client), 10, message="bundle CA never accepted the new client")
        step1 = time.monotonic() - t0
        # clients move to the new CA
        h.set_client(new_client)
        time.sleep(0.3)
        # step 2: trust only the new CA
        (staging / "ca.crt").write_bytes(new_ca.cert)
        t0 = time.monotonic()
        os.rename(staging / "ca.crt", live / "ca.crt")
        wait_until(lambda: not _client_ok(gw, old_client), 10, message="old CA still trusted after removal")
        step2 = time.monotonic() - t0
        time.sleep(0.3)
    print(f"\n[rotation/ca] new CA trusted after {step1:.3f}s, old CA dropped after {step2:.3f}s; hammer sent "
          f"{h.sent} requests ({h.ok} ok, {len(h.failures)} failed)")
    assert h.failures == [], h.failures[:5]
    assert h.sent >= 10
    assert _client_ok(gw, new_client)
    assert 'Subject="CN=new-client' in webapp.requests[-1]["headers"]["x-forwarded-client-cert"] or \
        any('CN=new-client' in r["headers"].get("x-forwarded-client-cert", "") for r in webapp.requests[-50:])


def sds_stat(gw, secret: str, counter: str) -> int:
    """A counter of the SDS secret ``secret`` (``kubernetes://x`` is ``sds.kubernetes_x.*`` in Envoy's stats)."""
    name = f"sds.{secret.replace('://', '_')}.{counter}"
    v = gw.stat(name)
    assert v is not None, f"no stat {name}: {sorted(gw.stats('sds.'))}"
    return v


def test_bad_rotation_keeps_serving_the_old_certificate(tmp_path, backend_factory, gateway_factory):
    """A mismatched cert/key pair moved in is rejected by Envoy; the old certificate stays, nothing fails;
    a correct pair afterwards is picked up.

    No fixed sleep: Envoy reloads a watched directory once per file moved into it, and a reload whose
    files do not make a valid certificate increments ``sds.<secret>.key_rotation_failed`` (the
    ``update_rejected`` counter is for xDS-delivered updates and stays 0 here). Envoy remembers the hash
    of the last *accepted* files only, so each of the two moves counts once: waiting for the counter to
    grow by 2 means Envoy has tried, and refused, the final bad pair."""
    secret = "kubernetes://webapp-credential"
    webapp = backend_factory("webapp")
    creds = copy_credentials(tmp_path, ["webapp-credential"])
    gw = gateway_factory(gateway_yaml("SIMPLE", webapp.port), ports=(443,), args=["--credentials-dir", str(creds)])
    live = gw.out_dir / "certs" / "webapp-credential"
    old = serial((live / "tls.crt").read_bytes())
    staging = gw.workdir / "staging"
    staging.mkdir()
    bad = mint_server_with_mismatched_key([HOST], DEV_INTERMEDIATE)
    good = mint_server([HOST], DEV_INTERMEDIATE)
    failed0 = sds_stat(gw, secret, "key_rotation_failed")
    assert (failed0, sds_stat(gw, secret, "update_rejected")) == (0, 0)
    # how many times the listener installed a new TLS context from SDS (1: the initial load)
    ctx_updates = f"listener.0.0.0.0_{gw.port(443)}.server_ssl_socket_factory.ssl_context_update_by_sds"
    ctx0 = gw.stat(ctx_updates)
    assert ctx0 == 1, sorted(gw.stats("ssl_context_update_by_sds").items())
    with Hammer(gw) as h:
        wait_until(lambda: h.sent >= 20, 10, message="no traffic on the old certificate")
        (staging / "tls.crt").write_bytes(bad.cert)
        (staging / "tls.key").write_bytes(bad.key)
        os.rename(staging / "tls.key", live / "tls.key")
        os.rename(staging / "tls.crt", live / "tls.crt")
        t0 = time.monotonic()
        gw.wait_for_stat(f"sds.{secret.replace('://', '_')}.key_rotation_failed", lambda v: v >= failed0 + 2,
                         timeout=10)
        rejected_after = time.monotonic() - t0
        assert gw.stat(ctx_updates) == ctx0, "Envoy installed a context from the mismatched pair"
        assert tls_handshake(LOCALHOST, gw.port(443), HOST, ca=ROOT_CA, probe=0).serial == old
        sent = h.sent
        wait_until(lambda: h.sent >= sent + 20, 10, message="no traffic after the bad pair")
        (staging / "tls.crt").write_bytes(good.cert)
        (staging / "tls.key").write_bytes(good.key)
        os.rename(staging / "tls.key", live / "tls.key")
        os.rename(staging / "tls.crt", live / "tls.crt")
        switch = wait_for_serial(gw, serial(good.cert))
        sent = h.sent
        wait_until(lambda: h.sent >= sent + 20, 10, message="no traffic on the good pair")
    print(f"\n[rotation/bad-then-good] mismatched pair refused by Envoy after {rejected_after:.3f}s, old certificate "
          f"kept; good pair served after {switch:.3f}s; hammer sent {h.sent} requests ({h.ok} ok, {len(h.failures)} failed)")
    assert h.failures == [], h.failures[:5]
    assert h.all_serials() == {old, serial(good.cert)}, "the mismatched certificate must never be presented"
    # the good pair: exactly one new context (its key move alone, next to the bad certificate, may or may
    # not have been tried and refused first, depending on when Envoy read the directory)
    assert gw.stat(ctx_updates) == ctx0 + 1
    assert sds_stat(gw, secret, "key_rotation_failed") in (failed0 + 2, failed0 + 3)
    assert gw.running
