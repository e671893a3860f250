"""The WHMCS CDR functions of seed 002 (`/api/cdr?action=...`) without I/O: reading their
parameters into a query, and our rows into the seed's output shapes and field names."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from cdrmodel.money import fmt8

ACTIONS = (
    "getCallAccounts",
    "getCallBilling",
    "getCallTypes",
    "getCDR",
    "getRates",
    "getTerminationRates",
    "getResellerCDR",
)
_ACTION_BY_KEY = {a.lower(): a for a in ACTIONS}

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10000
MAX_RANGE_DAYS = 366
_TEXT_LIMIT = 200
_NUMBER_LIMIT = 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NUMBER = re.compile(r"\+?\d{1,20}")

# Our dispositions (contract §2) under the seed's four flags; CONGESTION counts as failed.
DISPOSITION_FLAGS: dict[str, tuple[str, ...]] = {
    "answered": ("ANSWERED",),
    "noanswer": ("NO ANSWER",),
    "busy": ("BUSY",),
    "failed": ("FAILED", "CONGESTION"),
}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

# Seed 001's call types (the codes cdrmodel.phone assigns), as getCallTypes offers them.
CALL_TYPE_NAMES: dict[str, str] = {
    "I": "International Calls",
    "M": "Calls to Mobile",
    "L": "Local Calls",
    "S": "National Calls",
    "8": "Toll free calls",
    "9": "0900 Calls",
    "O": "Operator Calls",
    "IB": "Inbound Calls",
    "IS": "TollFree Inbound",
    "IM": "TollFree Inbound Mobile",
    "2T": "On-net calls",
}
CALL_TYPE_VALUE = "type:"  # a call type code as a calltype value: `type:I`

CALL_BILLING = [
    {"value": "all", "description": "All Calls"},
    {"value": "free", "description": "Free Calls"},
    {"value": "billed", "description": "Billed Calls"},
]


class ParamError(ValueError):
    """A parameter missing or not as the action needs it; `status` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def action_name(params: Mapping[str, str]) -> str:
    """The action, spelled as the seed spells it (its name matches case-insensitively)."""
    raw = params.get("action", "").strip()
    if not raw:
        raise ParamError(f"action: missing; one of {', '.join(ACTIONS)}")
    found = _ACTION_BY_KEY.get(raw.lower())
    if found is None:
        raise ParamError(f"action: unknown action {_shown(raw)}; one of {', '.join(ACTIONS)}")
    return found


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def text_param(
    params: Mapping[str, str], name: str, *, required: bool = False, limit: int = _TEXT_LIMIT
) -> str | None:
    """A free-text value (an id, an account name, a search); empty counts as absent."""
    value = params.get(name, "").strip()
    if not value:
        if required:
            raise ParamError(f"{name}: missing")
        return None
    if len(value) > limit:
        raise ParamError(f"{name}: longer than {limit} characters")
    if _CONTROL.search(value):
        raise ParamError(f"{name}: must not contain control characters")
    return value


def limit_param(params: Mapping[str, str]) -> int:
    raw = params.get("limit", "").strip()
    if not raw:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ParamError(f"limit: a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def _date(params: Mapping[str, str], name: str) -> date:
    raw = params.get(name, "").strip()
    if not raw:
        raise ParamError(f"{name}: missing; a date as YYYY-MM-DD")
    if not _DATE.fullmatch(raw):
        raise ParamError(f"{name}: {_shown(raw)} is not a date as YYYY-MM-DD")
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        raise ParamError(f"{name}: {_shown(raw)} is not a date as YYYY-MM-DD") from None
    if not 1970 <= value.year <= 2100:
        raise ParamError(f"{name}: {raw} is outside 1970-2100")
    return value


def timezone_minutes(params: Mapping[str, str]) -> int:
    """`timezone`: hours from UTC, -12 to 13, whole or fractional (5.5, 5.75), as minutes.

    A `+` sent unescaped in a query string arrives as a space (`timezone=+2` reads " 2"),
    so surrounding spaces are dropped, not refused."""
    raw = params.get("timezone", "").strip()
    if not raw:
        raise ParamError("timezone: missing; hours from UTC, -12 to 13")
    try:
        hours = Decimal(raw) if len(raw) <= 8 else None
    except InvalidOperation:
        hours = None
    if hours is None or not hours.is_finite() or not -12 <= hours <= 13:
        raise ParamError(f"timezone: {_shown(raw)} is not a number of hours from -12 to 13")
    minutes = hours * 60
    if minutes != minutes.to_integral_value():
        raise ParamError(f"timezone: {_shown(raw)} is not a whole number of minutes")
    return int(minutes)


def _flag(params: Mapping[str, str], name: str) -> bool | None:
    raw = params.get(name)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ParamError(f"{name}: {_shown(raw)} is not 1 or 0")


def dispositions(params: Mapping[str, str]) -> tuple[str, ...] | None:
    """The dispositions the four flags include; None: all of them.

    None of the flags given: every call. Some given: those set to 1 only (an HTML form
    sends only its ticked boxes, so a flag left out is one not ticked)."""
    flags = {name: _flag(params, name) for name in DISPOSITION_FLAGS}
    if all(v is None for v in flags.values()):
        return None
    if all(flags.values()):
        return None
    return tuple(d for name, on in flags.items() if on for d in DISPOSITION_FLAGS[name])


@dataclass(frozen=True, slots=True)
class CdrQuery:
    """What getCDR / getResellerCDR select: start times in [start, end) (UTC), shown with
    `offset_minutes` added; each filter None when not given."""

    start: datetime
    end: datetime
    offset_minutes: int
    limit: int
    dispositions: tuple[str, ...] | None = None
    direction: str | None = None  # 'inbound' | 'outbound'
    call_type: str | None = None
    destination: str | None = None  # calls to this number (an extension)
    call_billing: str | None = None  # 'free' | 'billed'
    account: str | None = None
    client: str | None = None


def _call_type_filter(raw: str | None) -> dict[str, str]:
    if raw is None or raw.lower() == "all":
        return {}
    key = raw.lower()
    if key == "outgoing":
        return {"direction": "outbound"}
    if key == "incoming":
        return {"direction": "inbound"}
    if raw.startswith(CALL_TYPE_VALUE) and raw[len(CALL_TYPE_VALUE) :] in CALL_TYPE_NAMES:
        return {"call_type": raw[len(CALL_TYPE_VALUE) :]}
    if _NUMBER.fullmatch(raw):
        return {"destination": raw}
    raise ParamError(
        f"calltype: unknown value {_shown(raw)}; all, outgoing, incoming, "
        f"{CALL_TYPE_VALUE}<code> or a number (the values getCallTypes lists)"
    )


def cdr_query(params: Mapping[str, str], *, reseller: bool) -> CdrQuery:
    """The parameters of getCDR (or, `reseller`, getResellerCDR: `client` required)."""
    client = text_param(params, "client", required=True) if reseller else None
    first = _date(params, "date_from")
    last = _date(params, "date_to")
    if last < first:
        raise ParamError("date_to: before date_from")
    if (last - first).days >= MAX_RANGE_DAYS:
        raise ParamError(f"date_to: the range is at most {MAX_RANGE_DAYS} days")
    offset = timezone_minutes(params)
    shift = timedelta(minutes=offset)
    # The caller's days: local midnight of date_from up to local midnight after date_to.
    start = datetime(first.year, first.month, first.day, tzinfo=UTC) - shift
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1) - shift
    billing = text_param(params, "callbilling")
    if billing is not None:
        billing = billing.lower()
        if billing not in ("all", "free", "billed"):
            raise ParamError(f"callbilling: unknown value {_shown(billing)}; all, free or billed")
    account = text_param(params, "account")
    return CdrQuery(
        start=start,
        end=end,
        offset_minutes=offset,
        limit=limit_param(params),
        dispositions=dispositions(params),
        call_billing=None if billing in (None, "all") else billing,
        account=None if account is None or account.lower() == "all" else account,
        client=client,
        **_call_type_filter(text_param(params, "calltype", limit=_NUMBER_LIMIT + 8)),
    )


def rate_search(params: Mapping[str, str]) -> str:
    """`query` of getRates / getTerminationRates: part of a destination name, or a prefix."""
    value = text_param(params, "query", required=True)
    assert value is not None
    return value


# Output


def hms(seconds: int) -> str:
    hours, rest = divmod(max(seconds, 0), 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def local_time(at: datetime, offset_minutes: int) -> str:
    shown = at.astimezone(UTC) + timedelta(minutes=offset_minutes)
    return shown.strftime("%Y-%m-%d %H:%M:%S")


def callerid(row: Mapping[str, Any]) -> str:
    """The caller as a PBX's caller id shows it: Asterisk's `clid` when it sent one, else a
    FreeSWITCH caller name around the number, else the number alone."""
    clid = row.get("clid")
    if clid:
        return str(clid)
    number = str(row["originating_number"])
    name = row.get("caller_name")
    if name and name != number:
        return f'"{name}" <{number}>'
    return number


def description(row: Mapping[str, Any]) -> str:
    """`Outbound - Canada - 613 Ottawa`: the call's way, then what it reached (the rate
    line's destination, else its call type, else why it is unrated)."""
    call_type = row.get("call_type")
    if call_type == "2T":
        way = "On-net"
    elif row.get("direction") == "inbound":
        way = "Inbound"
    else:
        way = "Outbound"
    what = row.get("destination_name") or CALL_TYPE_NAMES.get(call_type or "")
    if not what and row.get("unrated_reason"):
        what = f"Unrated ({row['unrated_reason']})"
    return f"{way} - {what}" if what else way


def cdr_entry(row: Mapping[str, Any], *, offset_minutes: int, with_rate: bool) -> dict[str, Any]:
    """One call in the seed's fields; getResellerCDR's entries have no `rate`."""
    seconds = int(row["duration"])
    entry: dict[str, Any] = {
        "date": local_time(row["start_time"], offset_minutes),
        "callerid": callerid(row),
        "destination": row["destination_number"],
        "description": description(row),
        "account": row.get("account") or "",
        "disposition": row["disposition"],
        "duration": hms(seconds),
        "seconds": seconds,
    }
    if with_rate:
        entry["rate"] = fmt8(row.get("rate"))
    entry["total"] = fmt8(row.get("total"))
    entry["uniqueid"] = row.get("external_id") or str(row["cdr_id"])
    return entry


def account_options(accounts: Iterable[str]) -> list[dict[str, str]]:
    return [{"value": "all", "description": "All Accounts"}] + [
        {"value": a, "description": a} for a in accounts
    ]


def call_type_options(numbers: Iterable[str]) -> list[dict[str, str]]:
    """all, outgoing, incoming, each call type code, then calls to each of `numbers`."""
    options = [
        {"value": "all", "description": "All Calls"},
        {"value": "outgoing", "description": "Outgoing Calls"},
        {"value": "incoming", "description": "Incoming Calls"},
    ]
    options += [
        {"value": CALL_TYPE_VALUE + code, "description": name}
        for code, name in CALL_TYPE_NAMES.items()
    ]
    options += [{"value": n, "description": f"Calls to {n}"} for n in numbers]
    return options


def _increment(value: Any) -> int | None:
    return None if value is None else int(value)


def package_rate_entries(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """getRates: the package's (client's) line and the route's (real) line under it."""
    return [
        {
            "destination": r["destination"],
            "prefix": r["prefix"],
            "client_increment": _increment(r["increment"]),
            "client_rate": fmt8(r["rate"]),
            "real_increment": _increment(r["real_increment"]),
            "real_rate": fmt8(r["real_rate"]),
        }
        for r in rows
    ]


def route_rate_entries(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "destination": r["destination"],
            "prefix": r["prefix"],
            "increment": _increment(r["increment"]),
            "rate": fmt8(r["rate"]),
        }
        for r in rows
    ]
