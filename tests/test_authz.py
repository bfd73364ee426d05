"""AuthorizationPolicy through the stock Envoy with real clients (Istio's pilot/pkg/security/authz):
client-address allow lists (ipBlocks = the connection's peer, remoteIpBlocks = the client address the
gateway derives from X-Forwarded-For with use_remote_address and meshConfig numTrustedProxies), a path
deny (403), dry-run, allow-nothing, a TCP server's network RBAC, and the refusals and warnings."""

from __future__ import annotations

import socket

from harness import http_get, run_envoygen, tcp_exchange
from istio_docs import dump, gateway_doc, se_doc, vs_doc, to

NS = "istio-system"


def policy(name: str, spec: dict, ns: str = NS, annotations: dict | None = None) -> dict:
    meta: dict = {"name": name, "namespace": ns}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": meta, "spec": spec}


def web(backend_port: int, hosts: list[str]) -> list[dict]:
    return [gateway_doc(ns=NS, hosts=hosts), vs_doc("vs", hosts, [{"route": to("web")}], ns=NS),
            se_doc("web", backend_port, ns=NS)]


def operator(trusted_hops: int) -> dict:
    return {
        "apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator",
        "metadata": {"name": "control-plane", "namespace": NS},
        "spec": {"meshConfig": {"defaultConfig": {"gatewayTopology": {"numTrustedProxies": trusted_hops}}},
                 "components": {"ingressGateways": [{"name": "istio-ingressgateway", "enabled": True,
                                                     "label": {"istio": "ingressgateway"}}]}},
    }


def status(gw, path: str = "/", host: str = "a.example.com", **kw) -> int:  # noqa: ANN001
    return http_get(gw, 80, path, host=host, **kw).status


def test_ip_blocks_allow_list_by_peer_address(backend_factory, gateway_factory):
    """ALLOW ipBlocks: the TCP peer (127.0.0.1 here) is on a.example.com's list, not on b's; an
    X-Forwarded-For header does not change the peer address (direct_remote_ip)."""
    b = backend_factory("web")
    allow = policy("allow-list", {"selector": {"matchLabels": {"istio": "ingressgateway"}}, "action": "ALLOW", "rules": [
        {"from": [{"source": {"ipBlocks": ["127.0.0.0/8"]}}], "to": [{"operation": {"hosts": ["a.example.com"]}}]},
        {"from": [{"source": {"ipBlocks": ["192.0.2.0/24"]}}], "to": [{"operation": {"hosts": ["b.example.com"]}}]},
    ]})
    gw = gateway_factory(dump(*web(b.port, ["a.example.com", "b.example.com"]), allow), ports=(80,))
    assert status(gw, host="a.example.com") == 200
    denied = http_get(gw, 80, "/", host="b.example.com")
    assert denied.status == 403 and denied.body == b"RBAC: access denied"
    assert status(gw, host="b.example.com", headers={"x-forwarded-for": "192.0.2.7"}) == 403
    assert b.count == 1


def test_remote_ip_blocks_follow_trusted_xff(backend_factory, gateway_factory):
    """DENY remoteIpBlocks: with numTrustedProxies 1 the client address is the last X-Forwarded-For entry,
    as Istio's gateway sees it; the peer itself (127.0.0.1) is not on the list."""
    b = backend_factory("web")
    deny = policy("deny-range", {"action": "DENY", "rules": [{"from": [{"source": {"remoteIpBlocks": ["203.0.113.0/24"]}}]}]})
    gw = gateway_factory(dump(operator(1), *web(b.port, ["a.example.com"]), deny), ports=(80,))
    assert status(gw, headers={"x-forwarded-for": "203.0.113.9"}) == 403
    assert status(gw, headers={"x-forwarded-for": "198.51.100.7"}) == 200
    assert status(gw) == 200  # no XFF: the peer address, not in the range
    assert b.count == 2
    assert b.requests[0]["headers"]["x-forwarded-for"].startswith("198.51.100.7,")  # the gateway appends the peer


def test_remote_ip_blocks_without_trusted_hops_ignore_xff(backend_factory, gateway_factory):
    """Without numTrustedProxies the gateway trusts no X-Forwarded-For: a forged header cannot get a client
    denied (or allowed) by remoteIpBlocks; notRemoteIpBlocks allows the real peer."""
    b = backend_factory("web")
    allow = policy("allow", {"action": "ALLOW", "rules": [{"from": [{"source": {"notRemoteIpBlocks": ["203.0.113.0/24"]}}]}]})
    gw = gateway_factory(dump(*web(b.port, ["a.example.com"]), allow), ports=(80,))
    assert status(gw, headers={"x-forwarded-for": "203.0.113.9"}) == 200


def test_path_deny_templates_dry_run_and_methods(backend_factory, gateway_factory):
    b = backend_factory("web")
    deny = policy("deny-paths", {"action": "DENY", "rules": [
        {"to": [{"operation": {"paths": ["/admin/*", "/api/{*}/secret"]}}]},
        {"to": [{"operation": {"methods": ["DELETE"], "notPaths": ["/public/*"]}}]},
    ]})
    dry = policy("dry", {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/dry"]}}]}]},
                 annotations={"istio.io/dry-run": "true"})
    gw = gateway_factory(dump(*web(b.port, ["a.example.com"]), deny, dry), ports=(80,))
    assert status(gw, "/admin/users") == 403
    assert status(gw, "/api/v1/secret") == 403
    assert status(gw, "/api/v1/v2/secret") == 200  # {*} is one segment
    assert status(gw, "/api/v1/public") == 200
    assert status(gw, "/public/x", method="DELETE") == 200
    assert status(gw, "/private/x", method="DELETE") == 403
    assert status(gw, "/dry") == 200  # dry-run: evaluated into shadow rules, not enforced
    assert [r["path"] for r in b.requests] == ["/api/v1/v2/secret", "/api/v1/public", "/public/x", "/dry"]


def test_allow_policy_without_rules_allows_nothing(backend_factory, gateway_factory):
    b = backend_factory("web")
    gw = gateway_factory(dump(*web(b.port, ["a.example.com"]), policy("allow-nothing", {})), ports=(80,))
    assert status(gw) == 403
    assert b.count == 0


def _tcp_docs(echo_port: int, *policies: dict) -> str:
    gw = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "tcp", "namespace": NS},
          "spec": {"selector": {"istio": "ingressgateway"},
                   "servers": [{"port": {"number": 31400, "name": "tcp", "protocol": "TCP"}, "hosts": ["*"]}]}}
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "tcp", "namespace": NS},
          "spec": {"hosts": ["*"], "gateways": ["tcp"],
                   "tcp": [{"route": [{"destination": {"host": "echo.example.com", "port": {"number": 31400}}}]}]}}
    se = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "echo", "namespace": NS},
          "spec": {"hosts": ["echo.example.com"], "resolution": "STATIC", "endpoints": [{"address": "127.0.0.1"}],
                   "ports": [{"number": 31400, "name": "tcp", "protocol": "TCP", "targetPort": echo_port}]}}
    return dump(gw, vs, se, *policies)


def _echo(gw) -> bytes:  # noqa: ANN001
    try:
        return tcp_exchange(gw.port(31400), b"ping\n", read_until=b"ping\n", timeout=3)
    except (ConnectionResetError, socket.timeout):
        return b""


def test_tcp_network_rbac_deny(backend_factory, gateway_factory):
    """A DENY on ipBlocks closes the TCP connection on its first bytes (envoy.filters.network.rbac): the
    client gets nothing back, the backend receives nothing (tcp_proxy may already have connected to it)."""
    echo = backend_factory.tcp("echo")
    deny = policy("deny-local", {"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["127.0.0.1"]}}]}]})
    gw = gateway_factory(_tcp_docs(echo.port, deny), ports=(31400,))
    assert _echo(gw) == b""
    assert echo.received == b""


def test_tcp_allow_rule_with_http_fields_allows_nothing(backend_factory, gateway_factory):
    """Istio's TCP behaviour: an ALLOW rule with paths cannot match a TCP connection, so nothing is allowed
    (warned EG0216); a rule with only ports/ipBlocks still allows."""
    echo = backend_factory.tcp("echo")
    http_only = policy("http-only", {"action": "ALLOW", "rules": [{"to": [{"operation": {"paths": ["/x"]}}]}]})
    gw = gateway_factory(_tcp_docs(echo.port, http_only), ports=(31400,))
    assert _echo(gw) == b""
    both = policy("http-only", {"action": "ALLOW", "rules": [{"to": [{"operation": {"paths": ["/x"]}}]},
                                                            {"from": [{"source": {"ipBlocks": ["127.0.0.1"]}}]}]})
    gw2 = gateway_factory(_tcp_docs(echo.port, both), ports=(31400,), name="gw2")
    assert _echo(gw2) == b"ping\n"


def test_custom_action_refused_and_unselected_policy_warned(tmp_path):
    custom = policy("ext", {"action": "CUSTOM", "provider": {"name": "my-ext-authz"}, "rules": [{}]})
    elsewhere = policy("elsewhere", {"selector": {"matchLabels": {"app": "reviews"}}}, ns="default")
    f = tmp_path / "in.yaml"
    f.write_text(dump(*web(9, ["a.example.com"]), custom))
    p = run_envoygen(["render", "-f", f, "-o", tmp_path / "out"])
    assert p.returncode == 1
    assert "EG0217" in p.stderr and "spec.action" in p.stderr
    assert not (tmp_path / "out").exists()
    f.write_text(dump(*web(9, ["a.example.com"]), elsewhere))
    p = run_envoygen(["render", "-f", f, "-o", tmp_path / "out"])
    assert p.returncode == 0, p.stderr
    line = next(l for l in p.stderr.splitlines() if "EG0215" in l)
    assert line.startswith(f"{f}:") and "default/elsewhere" in line


def test_tcp_http_only_deny_warning_names_fields(tmp_path):
    deny = policy("deny", {"action": "DENY", "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]})
    f = tmp_path / "in.yaml"
    f.write_text(_tcp_docs(9, deny))
    p = run_envoygen(["render", "-f", f, "-o", tmp_path / "out"])
    assert p.returncode == 0, p.stderr
    assert "EG0216" in p.stderr and "requestPrincipals" in p.stderr and "[spec.rules[0]]" in p.stderr


def test_bad_values_refused(tmp_path):
    bad = policy("bad", {"rules": [{"from": [{"source": {"ipBlocks": ["300.1.1.1"]}}],
                                    "to": [{"operation": {"ports": ["http"], "paths": ["/a/{x}"]}}],
                                    "when": [{"key": "request.time", "values": ["x"]}]}]})
    f = tmp_path / "in.yaml"
    f.write_text(dump(*web(9, ["a.example.com"]), bad))
    p = run_envoygen(["validate", "-f", f])
    assert p.returncode == 1
    for path in ("ipBlocks[0]", "ports[0]", "paths[0]", "when[0]"):
        assert path in p.stderr, (path, p.stderr)


def test_proxy_config_filters_column_shows_where_policies_apply(tmp_path):
    """``proxy-config listeners --filters``: each chain's network filters, the HCM's HTTP filters in brackets."""
    deny = policy("deny", {"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["192.0.2.0/24"]}}]}]})
    f = tmp_path / "in.yaml"
    f.write_text(dump(*web(9, ["a.example.com"])) + "---\n" + _tcp_docs(9, deny))
    out = tmp_path / "out"
    p = run_envoygen(["render", "-f", f, "-o", out])
    assert p.returncode == 0, p.stderr
    p = run_envoygen(["proxy-config", "listeners", out, "--filters"])
    assert p.returncode == 0, p.stderr
    rows = {line.split()[1]: line.split()[-1] for line in p.stdout.splitlines()[1:]}
    assert p.stdout.splitlines()[0].split()[-1] == "FILTERS"
    assert rows["8080"] == "http_connection_manager[rbac,router]"  # fault and cors only where a route uses them
    assert rows["31400"] == "rbac,tcp_proxy"
    plain = run_envoygen(["proxy-config", "listeners", out])
    assert "FILTERS" not in plain.stdout  # istioctl's columns unless asked


def test_target_refs_attach_only_to_a_gateway_api_workload(tmp_path):
    """Istio's ShouldAttachPolicy: targetRefs never attach to a workload without the
    gateway.networking.k8s.io/gateway-name label (EG0215), and attach to the one that has it."""
    ref = policy("by-ref", {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge"}],
                            "action": "DENY", "rules": [{}]})
    f = tmp_path / "in.yaml"
    f.write_text(dump(*web(9, ["a.example.com"]), ref))
    p = run_envoygen(["render", "-f", f, "-o", tmp_path / "a"])
    assert p.returncode == 0 and "EG0215" in p.stderr
    op = operator(0)
    op["spec"]["components"]["ingressGateways"][0]["label"]["gateway.networking.k8s.io/gateway-name"] = "edge"
    f.write_text(dump(op, *web(9, ["a.example.com"]), ref))
    p = run_envoygen(["render", "-f", f, "-o", tmp_path / "b"])
    assert p.returncode == 0 and "EG0215" not in p.stderr
    assert "ns[istio-system]-policy[by-ref]-rule[0]" in (tmp_path / "b" / "envoy.yaml").read_text()


def test_when_conditions_header_and_not_values(backend_factory, gateway_factory):
    """``when`` request.headers[...] values and notValues (principal side), connection-free keys on HTTP."""
    b = backend_factory("web")
    deny = policy("deny-when", {"action": "DENY", "rules": [{"when": [
        {"key": "request.headers[x-block]", "values": ["yes", "always*"]},
        {"key": "request.headers[x-team]", "notValues": ["ops"]},
    ]}]})
    gw = gateway_factory(dump(*web(b.port, ["a.example.com"]), deny), ports=(80,))
    assert status(gw, headers={"x-block": "yes"}) == 403
    assert status(gw, headers={"x-block": "always-on"}) == 403  # "always*": prefix
    assert status(gw, headers={"x-block": "yes", "x-team": "ops"}) == 200  # notValues excludes ops
    assert status(gw, headers={"x-block": "no"}) == 200
    assert status(gw) == 200
