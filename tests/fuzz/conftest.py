"""Fuzz-tier setup: how schemathesis writes the NDJSON body `POST /v1/cdrs` documents."""

from __future__ import annotations

import json
from typing import Any

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(context: Any, value: Any) -> bytes:
    """A generated string is sent as it is (arbitrary text is the point); a generated list
    as one JSON value a line, anything else as one line."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, list):
        return b"\n".join(json.dumps(item).encode() for item in value)
    return json.dumps(value).encode()
