"""Push bodies (JSON, XML-RPC, form), Standard Webhooks signatures, CRM acknowledgements."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import xmlrpc.client
from typing import Any
from urllib.parse import parse_qs, urlencode
from xml.parsers.expat import ExpatError

import orjson

FORMATS = ("json", "xmlrpc", "form")
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def secret_key(secret: str) -> bytes:
    """Standard Webhooks: a `whsec_` secret is base64; any other string is used as its bytes."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except ValueError:
            pass
    return secret.encode()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    message = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _flat(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def encode(fmt: str, record: dict[str, Any], *, xmlrpc_method: str) -> tuple[bytes, str]:
    """(body, content type) of one CDR push."""
    if fmt == "json":
        return orjson.dumps(record), "application/json"
    if fmt == "form":
        return urlencode({k: _flat(v) for k, v in record.items()}).encode(), (
            "application/x-www-form-urlencoded"
        )
    if fmt == "xmlrpc":
        body = xmlrpc.client.dumps((record,), methodname=xmlrpc_method, allow_none=True)
        return body.encode(), "text/xml"
    raise ValueError(f"unknown format {fmt!r}")


def acknowledged(body: bytes, content_type: str) -> tuple[bool, str | None]:
    """Seed 003's client response: when the body carries `Err`, only Err = 0 is success."""
    text = body.strip()
    if not text:
        return True, None
    err: Any = None
    desc: Any = None
    try:
        if "json" in content_type or text[:1] == b"{":
            data = orjson.loads(text)
            if isinstance(data, dict):
                err, desc = data.get("Err"), data.get("Errdesc")
        elif "xml" in content_type or text[:1] == b"<":
            (params, _method) = xmlrpc.client.loads(text.decode())
            first = params[0] if params else None
            if isinstance(first, dict):
                err, desc = first.get("Err"), first.get("Errdesc")
        elif b"Err=" in text:
            parsed = parse_qs(text.decode())
            err = parsed.get("Err", [None])[0]
            desc = parsed.get("Errdesc", [None])[0]
    except (orjson.JSONDecodeError, xmlrpc.client.Fault, ExpatError, ValueError) as exc:
        if isinstance(exc, xmlrpc.client.Fault):
            return False, f"XML-RPC fault {exc.faultCode}: {exc.faultString}"
        return True, None  # a body we cannot read carries no Err: the 2xx stands
    if err is None:
        return True, None
    try:
        ok = int(str(err).strip()) == 0
    except ValueError:
        ok = False
    return ok, None if ok else f"Err={err} {desc or ''}".strip()
