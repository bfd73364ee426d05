"""``proxy-config secret``: the bundle's SDS resources with their certificates.

Columns as istioctl's (istioctl/pkg/writer/compare/sds/writer.go): RESOURCE NAME,
TYPE, STATUS, VALID CERT, SERIAL NUMBER, NOT AFTER, NOT BEFORE. The serial number
is printed as istioctl prints it, ``fmt.Sprintf("%032x", cert.SerialNumber)`` in
istioctl/pkg/writer/compare/sds/util.go (secretMetaFromCert): lower-case hex,
zero-padded to 32 digits (not decimal). TYPE comes from the certificate, as there:
"CA" when it is a CA, else "Cert Chain". STATUS is ACTIVE when the files Envoy
watches hold a certificate, WARMING when they do not (Envoy keeps such a secret
warming). Key bytes are never read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .. import names
from .bundle import _LOADER, Bundle

HEADERS = ["RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER", "NOT BEFORE"]


def secret_items(bundle: Path) -> list[dict[str, Any]]:
    from ..credentials import describe_certificate

    items = []
    sds_dir = bundle / "sds"
    for sds in sorted(sds_dir.glob("*.yaml")) if sds_dir.is_dir() else []:
        doc = yaml.load(sds.read_text(), Loader=_LOADER) or {}
        for res in doc.get("resources") or []:
            credential, _ = names.credential_of_sds_file(sds.stem)
            if "tls_certificate" in res:
                rel = f"{names.cert_dir(sds.stem)}/tls.crt"
            else:
                rel = f"{names.cert_dir(credential)}/ca.crt"
            item: dict[str, Any] = {"name": res["name"], "resource_name": res["name"], "file": rel}
            try:
                info = describe_certificate((bundle / rel).read_bytes())
            except (OSError, ValueError) as exc:
                item.update(state="WARMING", valid=False, cert_valid=False, error=str(exc), type="")
            else:
                kind = "CA" if info.get("is_ca") else "Cert Chain"
                serial = format(int(info["serial"], 16), "032x")
                item.update(info, state="ACTIVE", type=kind, cert_valid=bool(info["valid"]), serial_number=serial)
            items.append(item)
    return items


def secrets(b: Bundle) -> tuple[list[str], list[list[str]], list[Any]]:
    data = secret_items(b.path)
    rows = [[s["name"], s.get("type", ""), s["state"], str(s["cert_valid"]).lower(), s.get("serial_number", ""),
             s.get("not_after", ""), s.get("not_before", "")] for s in data]
    return HEADERS, rows, data
