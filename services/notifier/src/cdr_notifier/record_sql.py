"""The stored record (contract §3, `cdrmodel.record.render_record`) computed by PostgreSQL.

Two readers build records in SQL so that Python only passes bytes along: the CSV export
(`/v1/cdrs?format=csv`, one column per field, `field_sql`) and the billing feed (one JSON
document per record, `json_fields`), each with the rest of the record (`rest_sql`). Both give
the values render_record gives; the tests hold them equal field by field on rows that take
every branch (each disposition, the PBX's own `type`/`status`/`did`, odd currencies, untimed
rows, recordings, time zones).

Times: `start_time` is shown in the session's `TimeZone`, which `use_zone` sets for the
reading transaction to the tenant's.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from zoneinfo import ZoneInfo

import asyncpg
from babel.numbers import get_currency_precision, list_currencies

from cdrmodel.money import currency_exponent
from cdrmodel.record import STATUS_OF_DISPOSITION


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sent_or(key: str, otherwise: str) -> str:
    """The PBX's own `key` from extra when it is a non-empty string or a non-zero whole
    number (as text), else `otherwise` (cdrmodel.record's `_sent(extra, key) or …`). The
    key test (`?`) first: most rows lack it, and it is cheap."""
    name = _quote(key)
    value = f"extra ->> {name}"
    return (
        f"CASE WHEN NOT extra ? {name} THEN {otherwise} "
        f"WHEN jsonb_typeof(extra -> {name}) = 'string' AND {value} <> '' THEN {value} "
        f"WHEN jsonb_typeof(extra -> {name}) = 'number' AND {value} ~ '^-?[0-9]+$'"
        f" AND {value} !~ '^-?0+$' THEN {value} "
        f"ELSE {otherwise} END"
    )


@lru_cache(maxsize=1)
def _odd_exponents() -> tuple[tuple[str, int], ...]:
    """Currencies whose minor unit is not a hundredth (CLDR's data as babel ships it)."""
    odd = []
    for code in sorted(list_currencies()):
        if len(code) == 3 and code.isalpha() and code.isupper():
            exponent = int(get_currency_precision(code))
            if exponent != 2:
                odd.append((code, exponent))
    return tuple(odd)


def _price(currency: str) -> str:
    """`price`: the total in the currency's minor unit, half-up (cdrmodel.money.minor_units;
    PostgreSQL's round() takes halves away from zero, as ROUND_HALF_UP does). The tenant's
    own currency is tried first: nearly every row has it."""
    others = " ".join(f"WHEN {_quote(c)} THEN {10**e}" for c, e in _odd_exponents())
    return (
        f"coalesce(CASE WHEN currency = {_quote(currency)} "
        f"THEN round(total * {10 ** currency_exponent(currency)}) "
        f"ELSE round(total * CASE currency {others} ELSE 100 END) END::bigint, 0)"
    )


# Seed 003 statuses for our dispositions, as cdrmodel.record maps them.
_STATUS_SQL = (
    "CASE disposition "
    + " ".join(f"WHEN {_quote(d)} THEN {_quote(s)}" for d, s in STATUS_OF_DISPOSITION.items())
    + " ELSE disposition END"
)
# ISO 8601 in the session's zone (set to the tenant's), as datetime.isoformat() writes it:
# microseconds only when there are any. One to_char per row.
_ISO = 'YYYY-MM-DD"T"HH24:MI:SS'
_START = (
    f"CASE WHEN date_trunc('second', start_time) = start_time "
    f"THEN to_char(start_time, '{_ISO}TZH:TZM') ELSE to_char(start_time, '{_ISO}.USTZH:TZM') END"
)
_DID_DEFAULT = "CASE WHEN direction = 'inbound' THEN destination_number ELSE '' END"
_TYPE_DEFAULT = "CASE WHEN direction = 'inbound' THEN 'Incoming Call' ELSE 'Extension Outgoing' END"
# Amounts as the contract's 8-place decimal strings (cdrmodel.money.fmt8; NUMERIC has no
# negative zero, so a tiny negative that rounds to zero prints unsigned, as fmt8 does).
_EIGHT = "round({}, 8)::text"


def rest_sql(columns: Sequence[str], *, recording: bool) -> str:
    """What a record holds beyond the fields `columns`, as the text of a JSON object, or NULL
    when there is nothing (most rows): what the PBX sent besides those fields, then the raw
    start time of an untimed row and, with `recording`, the recording URL, each only when
    there is one (render_record's rule: a row without a recording keeps a `record` its
    `extra` held). The CSV export's `extra` column (its `record` is a column of its own) and
    what the feed splices into each record's JSON."""
    known = "ARRAY[" + ", ".join(_quote(c) for c in columns) + "]::text[]"
    parts = [
        f"(coalesce(extra, '{{}}'::jsonb) - {known})",
        "CASE WHEN start_time IS NULL AND start_time_raw <> ''"
        " THEN jsonb_build_object('start_time_raw', start_time_raw) ELSE '{}'::jsonb END",
    ]
    if recording:
        parts.append(
            "CASE WHEN recording_url <> ''"
            " THEN jsonb_build_object('record', recording_url) ELSE '{}'::jsonb END"
        )
    return f"nullif({' || '.join(parts)}, '{{}}'::jsonb)::text"


def field_sql(currency: str) -> dict[str, str]:
    """Each field of the record as an SQL expression of text or a number (CSV cells)."""
    return {
        "feed_id": "feed_id",
        "revision": "revision",
        "cdr_id": "cdr_id",
        "external_id": "external_id",
        "database_id": "database_id",
        "api_account": "api_account",
        "account": "account",
        "extension": "extension",
        "start_time": _START,
        "time": "extract(epoch FROM date_trunc('second', start_time))::bigint",
        "caller": "originating_number",
        "target": "destination_number",
        "did": _sent_or("did", _DID_DEFAULT),
        "duration": "duration",
        "dialtime": "coalesce(ring_seconds, 0)",
        "billed_seconds": "coalesce(billed_seconds, 0)",
        "type": _sent_or("type", _TYPE_DEFAULT),
        "status": _sent_or("status", _STATUS_SQL),
        "disposition": "disposition",
        "direction": "direction",
        "call_type": "call_type",
        "call_billing": "call_billing",
        "destination_name": "destination_name",
        "matched_prefix": "matched_prefix",
        "rate": _EIGHT.format("rate"),
        "total": _EIGHT.format("total"),
        "cost": _EIGHT.format("cost"),
        "price": _price(currency),
        "currency": "coalesce(nullif(currency, ''), 'USD')",
        "rated": "CASE WHEN rated THEN 'true' ELSE 'false' END",
        "unrated_reason": "unrated_reason",
        "ivruniqueid": "coalesce(nullif(external_id, ''), cdr_id::text)",
        "account_code": "account_code",
        # The recording URL; rows stored before the column existed kept it in `extra`.
        "record": "CASE WHEN recording_url <> '' THEN recording_url ELSE extra ->> 'record' END",
    }


def json_fields(currency: str) -> dict[str, str]:
    """The fields every record has, with its feed_id, as SQL expressions of the types its
    JSON carries (render_record's): numbers as numbers, `rated` a boolean, absent values
    null. `row_to_json` of a row of these, named so, is the record but for `rest_sql`."""
    typed = {
        "cdr_id": "cdr_id::text",
        "rated": "coalesce(rated, false)",
        "revision": "coalesce(nullif(revision, 0), 1)",
    }
    fields = field_sql(currency)
    return {name: typed.get(name, sql) for name, sql in fields.items() if name != "record"}


def _zone_name(timezone: str) -> str:
    """The zone to show times in: the tenant's, or UTC for a name Python cannot read (as
    render_record does)."""
    try:
        ZoneInfo(timezone)
    except (KeyError, ValueError):
        return "UTC"
    return timezone


async def use_zone(db: asyncpg.Connection, timezone: str) -> None:
    """Show times in `timezone` (else UTC) for the rest of the open transaction on `db`.

    A name Python reads but this server's zone database lacks is refused by PostgreSQL;
    a savepoint keeps that refusal from aborting the transaction, and UTC serves."""
    try:
        async with db.transaction():
            await db.execute("SELECT set_config('TimeZone', $1, true)", _zone_name(timezone))
    except asyncpg.InvalidParameterValueError:
        await db.execute("SELECT set_config('TimeZone', 'UTC', true)")
