"""Edge validation: text PostgreSQL can store (no NUL or control characters, bounded length)
and integers within their column's range, as Annotated types for bodies and parameters."""

from __future__ import annotations

from typing import Annotated, Any

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
