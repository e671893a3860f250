"""Edge validation: text PostgreSQL can store (no NUL or control characters, bounded length)
and integers within their column's range, as Annotated types for bodies and parameters."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, StringConstraints

INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1
INT8_MIN, INT8_MAX = -(2**63), 2**63 - 1

# Published in the OpenAPI document so clients (and fuzzers) know the rule; the validator
# below gives the readable message.
NO_CONTROL_PATTERN = r"^[^\x00-\x1f\x7f]*$"
_CONTROL = frozenset([*range(0x20), 0x7F])


def _no_control(value: str) -> str:
    # PostgreSQL text cannot hold NUL at all; other control characters in names and ids are
    # never intended and break logs, CSV exports and headers downstream.
    for ch in value:
        if ord(ch) in _CONTROL:
            raise ValueError(f"must not contain control characters (found {ch!r})")
    return value


def _text(max_length: int, min_length: int = 0) -> Any:
    return Annotated[
        str,
        StringConstraints(min_length=min_length, max_length=max_length),
        AfterValidator(_no_control),
        Field(json_schema_extra={"pattern": NO_CONTROL_PATTERN}),
    ]


# Ids in paths and bodies (tenant, account, package, route, extension, subscription).
Identifier = _text(100, min_length=1)
# Display names, billing account names, search strings.
Name = _text(200)
# Secrets and passwords: bounded so hashing a huge body cannot stall a worker.
Secret = _text(1024, min_length=1)
# Calling and called numbers as a PBX sends them (contract §2: at most 20 characters).
PhoneText = _text(20, min_length=1)
# URLs of webhooks.
UrlText = _text(2048, min_length=1)

Int4 = Annotated[int, Field(ge=INT4_MIN, le=INT4_MAX)]
NonNegativeInt4 = Annotated[int, Field(ge=0, le=INT4_MAX)]
NonNegativeInt8 = Annotated[int, Field(ge=0, le=INT8_MAX)]


# Recording URLs (seed 003's `record`): kept per CDR and handed to API accounts as a redirect,
# so they must be a URL a `Location` header carries unchanged: RFC 3986 characters only
# (anything else percent-encoded, host names in their ASCII form), http or https, a host.
RECORDING_URL_LIMIT = 2048
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")


def check_recording_url(value: str) -> str:
    """`value` when it is an absolute http(s) URL of at most RECORDING_URL_LIMIT characters;
    else ValueError saying what is wrong with it."""
    if len(value) > RECORDING_URL_LIMIT:
        raise ValueError(f"is {len(value)} characters; the limit is {RECORDING_URL_LIMIT}")
    if not _URL_CHARS.fullmatch(value):
        raise ValueError(
            "is not a URL: spaces, control characters and non-ASCII characters must be "
            "percent-encoded"
        )
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number 0..65535)
    except ValueError as exc:
        raise ValueError(f"is not a URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("must name a host (http(s)://host/...)")
    return value


RecordingUrl = Annotated[str, AfterValidator(check_recording_url)]
