"""The JSON Web Key Sets that RequestAuthentication rules name, read at build time.

Istio's istiod fetches a ``jwksUri`` itself and inlines the keys into the proxy's
``jwt_authn`` config (``JwtKeyResolver.BuildLocalJwks``). envoygen does the same when it
builds the bundle: the keys come from ``jwks`` (inline), from ``--jwks URI=FILE`` (air-gapped
builds), or from fetching ``jwksUri`` (unless ``--no-jwks-fetch``). Anything else is EG0310:
a gateway must not start without the keys it checks tokens against.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..diagnostics import Findings
from ..model import Res

MAX_JWKS = 1024 * 1024
FETCH_TIMEOUT = 5.0


def jwks_problem(text: str) -> str | None:
    """Why ``text`` is not a JWKS (a JSON object with a non-empty ``keys`` list), or None."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        return f"not JSON ({exc})"
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
        return "not a JWK set (a JSON object with a non-empty 'keys' list)"
    return None


def _fetch(uri: str) -> str:
    if not uri.startswith(("http://", "https://")):
        raise OSError("only http:// and https:// URIs can be fetched")
    import urllib.request  # with email, ssl and http.client: ~15 ms, only when a JWKS is fetched

    req = urllib.request.Request(uri, headers={"accept": "application/json"})
    with urllib.request.urlopen(req, timeout=FETCH_TIMEOUT) as resp:  # noqa: S310 - scheme checked above
        body = resp.read(MAX_JWKS + 1)
    if len(body) > MAX_JWKS:
        raise OSError("larger than 1 MiB")
    return body.decode("utf-8")


def _from_file(path: str) -> str:
    p = Path(path)
    if p.stat().st_size > MAX_JWKS:
        raise OSError("larger than 1 MiB")
    return p.read_text(encoding="utf-8")


def resolve_jwks(policies: list[Res[Any]], files: dict[str, str], fetch: bool, findings: Findings) -> dict[str, str]:
    """Every ``jwksUri`` of ``policies`` → its JWKS text; problems are EG0310 at the field."""
    out: dict[str, str] = {}
    for ra in policies:
        for i, rule in enumerate(ra.obj.spec.jwt_rules):
            path = ("spec", "jwtRules", i)
            where = f"spec.jwtRules[{i}]"
            if rule.jwks is not None:
                why = jwks_problem(rule.jwks)
                if why:
                    findings.error(ra.file, ra.line(*path, "jwks"), "EG0310",
                                   f"RequestAuthentication {ra.key}: jwks is {why}", f"{where}.jwks")
                continue
            uri = rule.jwks_uri
            if not uri:
                findings.error(ra.file, ra.line(*path), "EG0310",
                               f"RequestAuthentication {ra.key}: issuer {rule.issuer} has neither jwks nor jwksUri; "
                               "envoygen does not run OpenID discovery", where, "set jwksUri or jwks")
                continue
            if uri in out:
                continue
            try:
                if uri in files:
                    text, how = _from_file(files[uri]), f"--jwks file {files[uri]}"
                elif fetch:
                    text, how = _fetch(uri), "fetched"
                else:
                    findings.error(ra.file, ra.line(*path, "jwksUri"), "EG0310",
                                   f"RequestAuthentication {ra.key}: jwksUri {uri} is not fetched (--no-jwks-fetch) "
                                   "and no --jwks file is given for it", f"{where}.jwksUri",
                                   f"pass --jwks {uri}=FILE")
                    continue
            except (OSError, UnicodeDecodeError, ValueError) as exc:  # urllib's URLError is an OSError
                findings.error(ra.file, ra.line(*path, "jwksUri"), "EG0310",
                               f"RequestAuthentication {ra.key}: jwksUri {uri} cannot be read: {exc}", f"{where}.jwksUri",
                               f"make it reachable from the build machine, or pass --jwks {uri}=FILE")
                continue
            why = jwks_problem(text)
            if why:
                findings.error(ra.file, ra.line(*path, "jwksUri"), "EG0310",
                               f"RequestAuthentication {ra.key}: jwksUri {uri} ({how}) is {why}", f"{where}.jwksUri")
                continue
            out[uri] = text
    return out
