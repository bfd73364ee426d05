"""Every Envoy name Istio defines, written (and parsed back) here and nowhere else.

What ``istioctl proxy-config`` shows for an Istio ingress gateway, and so what
envoygen's bundles carry (pilot's sources in parentheses):

========================  ===============================================  =====================================
what                      form                                             example
========================  ===============================================  =====================================
listener                  ``<bind>_<bind port>``                           ``0.0.0.0_8080`` (gateway.go)
HTTP route config         ``http.<bind port>[.<bind>]``                    ``http.8080``
HTTPS route config        ``https.<port>.<port name>.<gw>.<ns>[.<bind>]``  ``https.443.https.gw.istio-system``
virtual host              ``<host>:<server port>``                         ``webapp.istioinaction.io:80``
blackhole virtual host    ``blackhole:<server port>``                      ``blackhole:80``
HCM stat prefix           ``outbound_<listener>``                          ``outbound_0.0.0.0_8080``
TLS filter chain          ``<listener>.<port name>.<gw>``                  ``0.0.0.0_8443.tls.gw``
cluster                   ``<direction>|<port>|<subset>|<fqdn>``           ``outbound|80||webapp.ns.svc.cluster.local``
SDS certificate           ``kubernetes://<credential>``                    (model.GetOrDefault / credentials)
SDS CA                    ``kubernetes://<credential>-cacert``
SDS from file paths       ``file-cert:<cert>~<key>``, ``file-root:<ca>``   (model/credentials.go)
SDS mesh identity         ``default``, ``ROOTCA``                          (--mesh-identity; ISTIO_MUTUAL)
mesh SNI                  ``outbound_.<port>_.<subset>_.<fqdn>``           ``outbound_.9080_.v2_.reviews.ns.svc.cluster.local``
node                      ``router~0.0.0.0~<wl>.<ns>~<ns>.svc.cluster.local``
========================  ===============================================  =====================================

Bundle-relative files follow the same credential names: ``sds/<credential>.yaml``,
``sds/<credential>-cacert.yaml`` and ``certs/<credential>/``.
"""

from __future__ import annotations

import hashlib

ANY_ADDRESS = "0.0.0.0"
SDS_PREFIX = "kubernetes://"
CA_SUFFIX = "-cacert"
FILE_CERT_PREFIX = "file-cert:"
FILE_ROOT_PREFIX = "file-root:"
# Istio's workload identity over SDS (pilot/pkg/model/credentials, security/pkg/nodeagent)
MESH_CERT_SDS = "default"
MESH_ROOT_SDS = "ROOTCA"
MESH_CREDENTIAL = "istio-mesh"  # the bundle's certs/ and sds/ entry for --mesh-identity
# Istio's file-mounted certificate names (/etc/certs): --mesh-identity DIR holds these
MESH_FILES = ("cert-chain.pem", "key.pem", "root-cert.pem")

# Kubernetes object names (RFC 1123, apimachinery's validation): a DNS label names a namespace,
# a DNS subdomain a Deployment or a Secret, so a credential's SDS and file names.
DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_MAX, DNS1123_SUBDOMAIN_MAX = 63, 253
DNS1123_LABEL_PATTERN = rf"^{DNS1123_LABEL}$"
DNS1123_SUBDOMAIN_PATTERN = rf"^{DNS1123_LABEL}(\.{DNS1123_LABEL})*$"


# -- listeners and what hangs off them ------------------------------------


def listener(bind: str, port: int) -> str:
    return f"{bind}_{port}"


def _bind_suffix(bind: str) -> str:
    """Istio appends the bind address to route names of listeners not on 0.0.0.0."""
    return "" if bind == ANY_ADDRESS else f".{bind}"


def http_route_config(port: int, bind: str = ANY_ADDRESS) -> str:
    return f"http.{port}{_bind_suffix(bind)}"


def https_route_config(server_port: int, port_name: str, gateway: str, namespace: str, bind: str = ANY_ADDRESS) -> str:
    return f"https.{server_port}.{port_name}.{gateway}.{namespace}{_bind_suffix(bind)}"


def virtual_host(host: str, server_port: int) -> str:
    return f"{host}:{server_port}"


def blackhole_virtual_host(server_port: int) -> str:
    return f"blackhole:{server_port}"


def stat_prefix(listener_name: str) -> str:
    return f"outbound_{listener_name}"


def tls_filter_chain(listener_name: str, port_name: str, gateway: str) -> str:
    return f"{listener_name}.{port_name}.{gateway}"


# -- clusters --------------------------------------------------------------


def cluster(port: int, subset: str, host: str, direction: str = "outbound") -> str:
    """model.BuildSubsetKey: ``outbound|80||webapp.ns.svc.cluster.local``."""
    return f"{direction}|{port}|{subset}|{host}"


def mesh_sni(port: int, subset: str, host: str) -> str:
    """model.BuildDNSSrvSubsetKey: the SNI of ISTIO_MUTUAL upstreams, ``outbound_.80_.v1_.reviews.ns.svc.cluster.local``."""
    return f"outbound_.{port}_.{subset}_.{host}"


def parse_cluster(name: str) -> tuple[str, str, str, str] | None:
    """``(direction, port, subset, host)`` of a name ``cluster()`` wrote, else None."""
    parts = name.split("|")
    if len(parts) != 4:
        return None
    direction, port, subset, host = parts
    return direction, port, subset, host


# -- credentials -----------------------------------------------------------


def sds(credential: str) -> str:
    """The SDS name of a credential's certificate and key (an SDS name stays as it is)."""
    if credential.startswith(SDS_PREFIX):
        return credential
    return f"{SDS_PREFIX}{credential}"


def sds_ca(credential: str) -> str:
    """The SDS name of a credential's CA material."""
    return sds(credential) + CA_SUFFIX


def ca_secret(secret: str) -> str:
    """The Kubernetes Secret Istio reads a credential's CA from first."""
    return secret + CA_SUFFIX


def file_cert(cert: str, key: str) -> str:
    return f"{FILE_CERT_PREFIX}{cert}~{key}"


def file_root(ca: str) -> str:
    return f"{FILE_ROOT_PREFIX}{ca}"


def file_credential(cert: bytes, key: bytes) -> str:
    """The credential (directory) name envoygen gives material named by file paths."""
    return "file-" + hashlib.sha256(cert + b"\0" + key).hexdigest()[:12]


def upstream_file_credential(cert: bytes | None, key: bytes | None, ca: bytes | None) -> str:
    """The credential name of DestinationRule TLS material named by file paths."""
    return "upstream-" + hashlib.sha256((cert or b"") + b"\0" + (key or b"") + b"\0" + (ca or b"")).hexdigest()[:12]


def sds_file(credential: str) -> str:
    return f"sds/{credential}.yaml"


def sds_ca_file(credential: str) -> str:
    return f"sds/{credential}{CA_SUFFIX}.yaml"


def cert_dir(credential: str) -> str:
    return f"certs/{credential}"


def credential_of_sds_file(stem: str) -> tuple[str, bool]:
    """``(credential, is_ca)`` for the stem of a file ``sds_file``/``sds_ca_file`` wrote."""
    if stem.endswith(CA_SUFFIX) and len(stem) > len(CA_SUFFIX):
        return stem[: -len(CA_SUFFIX)], True
    return stem, False


# -- the node and the fixed listeners ----------------------------------------


def node_id(workload: str, namespace: str) -> str:
    return f"router~{ANY_ADDRESS}~{workload}.{namespace}~{namespace}.svc.cluster.local"


def node_cluster(workload: str, namespace: str) -> str:
    return f"{workload}.{namespace}"


# -- TCP and TLS routes --------------------------------------------------------


def weighted_tcp_stat_prefix(virtual_service: str, namespace: str) -> str:
    """tcp_proxy stat prefix for a route to several clusters (one cluster: its name)."""
    return f"{virtual_service}.{namespace}"


def passthrough_chain(gateway: str, namespace: str, virtual_service: str, tls_index: int, match_index: int) -> str:
    return f"{gateway}.{namespace}.{virtual_service}.tls{tls_index}.{match_index}"
