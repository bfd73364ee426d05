"""Envoy's YAML (proto field names, snake_case) as protobuf JSON (lowerCamelCase),
the form istioctl prints with ``-o json``.

Only field names change. Map keys keep their spelling (``filter_metadata``,
``typed_per_filter_config``, ...), and ``google.protobuf.Struct`` values (the
metadata under ``filter_metadata``, an access log's ``json_format``) are data,
copied as they are.
"""

from __future__ import annotations

from typing import Any

# map<string, Struct>: keys and values are data
_STRUCT_MAPS = frozenset({"filter_metadata", "json_format", "metadata_"})
# map<string, message>: keys are data, values are messages
_MESSAGE_MAPS = frozenset({"typed_per_filter_config", "typed_extension_protocol_options", "typed_filter_metadata"})
# google.protobuf.Struct fields
_STRUCTS = frozenset({"json_format", "static_layer"})


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def to_protojson(value: Any) -> Any:
    """``value`` (parsed Envoy YAML) with every proto field name in lowerCamelCase."""
    if isinstance(value, list):
        return [to_protojson(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, v in value.items():
        if not isinstance(key, str) or key.startswith("@"):
            out[key] = v
        elif key in _STRUCTS or key in _STRUCT_MAPS:
            out[camel(key)] = v
        elif key in _MESSAGE_MAPS and isinstance(v, dict):
            out[camel(key)] = {k: to_protojson(x) for k, x in v.items()}
        else:
            out[camel(key)] = to_protojson(v)
    return out
