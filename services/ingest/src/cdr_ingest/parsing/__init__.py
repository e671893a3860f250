"""Request bodies to per-record results: native JSON/NDJSON, FreeSWITCH JSON, Asterisk CSV.

Pure (no I/O, no web framework, broker or SQL imports): routes call these and produce the
`Parsed` events; `docs/ingest.md` has the field mappings and the codes.
"""

from cdr_ingest.parsing.asterisk import parse_asterisk, resolve_timezone
from cdr_ingest.parsing.common import (
    MAX_BODY_BYTES,
    MAX_RECORDS,
    BadTimezone,
    BodyTooLarge,
    BodyUnreadable,
    Parsed,
    ParseResult,
    Refused,
    gc_paused,
)
from cdr_ingest.parsing.freeswitch import parse_freeswitch
from cdr_ingest.parsing.native import is_ndjson, parse_native

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_RECORDS",
    "BadTimezone",
    "BodyTooLarge",
    "BodyUnreadable",
    "ParseResult",
    "Parsed",
    "Refused",
    "gc_paused",
    "is_ndjson",
    "parse_asterisk",
    "parse_freeswitch",
    "parse_native",
    "resolve_timezone",
]
