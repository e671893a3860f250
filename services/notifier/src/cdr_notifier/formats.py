"""Push bodies (JSON, XML-RPC, form), Standard Webhooks signatures, CRM acknowledgements."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import xmlrpc.client
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, urlencode
from xml.parsers.expat import ExpatError

import orjson
from defusedxml import DefusedXmlException
from defusedxml.xmlrpc import DefusedExpatParser

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


@lru_cache(maxsize=4096)
def secret_key(secret: str) -> bytes:
    """Standard Webhooks: a `whsec_` secret is base64; any other string is used as its bytes."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except ValueError:
            pass
    return secret.encode()


@lru_cache(maxsize=4096)
def _keyed(secret: str) -> hmac.HMAC:
    """An HMAC-SHA256 with the secret's key absorbed; each signature starts from a copy."""
    return hmac.new(secret_key(secret), digestmod=hashlib.sha256)


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    # A copy of the keyed state, not a new HMAC per push: OpenSSL's key setup was two thirds
    # of a signature's cost (9.4 us -> 3.8 us for a 700-byte body).
    mac = _keyed(secret).copy()
    mac.update(f"{webhook_id}.{timestamp}.".encode())
    mac.update(body)
    return "v1," + base64.b64encode(mac.digest()).decode()


def _flat(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


_I4_MIN, _I4_MAX = -(2**31), 2**31 - 1


def _xmlrpc_safe(value: Any) -> Any:
    """XML-RPC's <int> is 32-bit: larger integers travel as strings (epoch times after 2038)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if _I4_MIN <= value <= _I4_MAX else str(value)
    if isinstance(value, dict):
        return {str(k): _xmlrpc_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_xmlrpc_safe(v) for v in value]
    return value


def valid_secret(secret: str) -> bool:
    """A Standard Webhooks secret: `whsec_` then base64 of 24 to 64 random bytes."""
    if not secret.startswith(SECRET_PREFIX):
        return False
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        return False
    return 24 <= len(key) <= 64


def encode(fmt: str, record: dict[str, Any], *, xmlrpc_method: str) -> tuple[bytes, str]:
    """(body, content type) of one CDR push."""
    if fmt == "json":
        return orjson.dumps(record), "application/json"
    if fmt == "form":
        return urlencode({k: _flat(v) for k, v in record.items()}).encode(), (
            "application/x-www-form-urlencoded"
        )
    if fmt == "xmlrpc":
        body = xmlrpc.client.dumps(
            (_xmlrpc_safe(record),), methodname=xmlrpc_method, allow_none=True
        )
        return body.encode(), "text/xml"
    raise ValueError(f"unknown format {fmt!r}")


def _xmlrpc_params(text: bytes) -> tuple[Any, ...]:
    """`xmlrpc.client.loads` with defusedxml's parser: a CRM's reply is untrusted XML, and
    expat alone expands entities (billion laughs) and would follow external ones."""
    unmarshaller = xmlrpc.client.Unmarshaller()
    parser = DefusedExpatParser(unmarshaller)
    parser.feed(text)
    parser.close()
    return unmarshaller.close()  # raises Fault for a <fault> reply


def _err_of(text: bytes) -> tuple[bool, Any, Any]:
    """(found, Err, Errdesc) from a JSON object, an XML-RPC struct or a form body, tried in
    that order whatever the content type says (CRMs often label bodies wrongly)."""
    try:
        data = orjson.loads(text)
        if isinstance(data, dict) and "Err" in data:
            return True, data["Err"], data.get("Errdesc")
    except orjson.JSONDecodeError:
        pass
    if text[:1] == b"<":
        try:
            params = _xmlrpc_params(text)
        except xmlrpc.client.Fault as fault:
            return True, f"fault {fault.faultCode}", fault.faultString
        except DefusedXmlException as exc:  # entity expansion, external references
            return True, "refused", f"XML reply not read ({type(exc).__name__})"
        except (ExpatError, xmlrpc.client.Error, ValueError):  # not XML-RPC: carries no Err
            return False, None, None
        first = params[0] if params else None
        if isinstance(first, dict) and "Err" in first:
            return True, first["Err"], first.get("Errdesc")
        return False, None, None
    try:
        parsed = parse_qs(text.decode(), strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return False, None, None
    if "Err" in parsed:
        return True, parsed["Err"][0], parsed.get("Errdesc", [None])[0]
    return False, None, None


def acknowledged(body: bytes, content_type: str = "") -> tuple[bool, str | None]:
    """Seed 003's client response: when the body carries `Err`, only Err = 0 is success; a
    2xx whose body carries no Err (empty, text, HTML) is success."""
    text = body.strip()
    if not text:
        return True, None
    found, err, desc = _err_of(text)
    if not found:
        return True, None
    try:
        ok = int(str(err).strip()) == 0
    except ValueError:
        ok = False
    return ok, None if ok else f"Err={err} {desc or ''}".strip()
