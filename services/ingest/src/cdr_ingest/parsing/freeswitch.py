"""`POST /v1/pbx/freeswitch`: the JSON CDR mod_json_cdr posts, one leg of a call per body.

Shapes handled, as FreeSWITCH writes them (switch_ivr_generate_json_cdr):
- `callflow` holds one caller profile per dialplan pass, newest first. Newer versions send an
  array; older ones repeat the `"callflow"` key in one object, which a last-key-wins
  `json.loads` reduces to the oldest profile. The body is read with an object_pairs_hook that
  keeps every repetition, and the profile is chosen by `profile_index`, not by position.
- `variables` values are percent-encoded (`encode-values`, on by default): `%20` is a space,
  `+` is a plus (a leading `+` of an E.164 number must survive).
- Each leg of a bridged call is posted on its own. The A-leg (the one that dialled) is billed,
  keyed by its uuid; its B-legs' uuids are kept in `extra.b_leg_uuids`. A B-leg (its caller
  profile names an `originator`) is answered NOT_BILLED_B_LEG and not produced, so a call
  is never billed twice.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from cdr_ingest.parsing.common import (
    MALFORMED_RECORD,
    NOT_BILLED_B_LEG,
    BodyUnreadable,
    Parsed,
    ParseResult,
    Refused,
    account_code,
    check_body_size,
    check_extra,
    check_record_count,
    epoch_start,
    make_event,
    pbx_id,
    start_fields,
    text,
)
from cdr_ingest.service import (
    DESTINATION_INVALID,
    DESTINATION_LIMIT,
    DURATION_INVALID,
    MAX_DURATION,
    ORIGIN_INVALID,
    ORIGIN_LIMIT,
    RECORDING_URL_INVALID,
    Rejected,
    parse_duration,
    parse_whole,
    recording_url,
)
from cdrmodel.events import CdrSubmitted
from cdrmodel.principals import Principal

# Unanswered legs by hangup cause (Q.850 names FreeSWITCH uses); any other cause is FAILED.
_UNANSWERED = {
    "USER_BUSY": "BUSY",
    "NO_ANSWER": "NO ANSWER",
    "NO_USER_RESPONSE": "NO ANSWER",
    "ORIGINATOR_CANCEL": "NO ANSWER",
    "NORMAL_CLEARING": "NO ANSWER",
    "ALLOTTED_TIMEOUT": "NO ANSWER",
    "LOSE_RACE": "NO ANSWER",
    "PICKED_OFF": "NO ANSWER",
    "NORMAL_CIRCUIT_CONGESTION": "CONGESTION",
    "SWITCH_CONGESTION": "CONGESTION",
}


def _keep_callflows(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    flows: list[Any] = []
    for key, value in pairs:
        if key == "callflow":
            flows.extend(value if isinstance(value, list) else [value])
        else:
            obj[key] = value
    if flows:
        obj["callflow"] = flows
    return obj


def parse_freeswitch(body: bytes, *, principal: Principal, now: datetime) -> list[ParseResult]:
    """One result per CDR (a body is one CDR, or an array of them for files replayed)."""
    check_body_size(body)
    try:
        value = json.loads(body.decode("utf-8", "replace"), object_pairs_hook=_keep_callflows)
    except (ValueError, RecursionError) as exc:
        # RecursionError: the stdlib parser (needed for the hook) has no depth limit of its
        # own; a body nested thousands deep is unreadable, not a server error.
        raise BodyUnreadable(f"body is not a mod_json_cdr JSON document: {exc}") from None
    cdrs = value if isinstance(value, list) else [value]
    check_record_count(len(cdrs))
    return [parse_cdr(cdr, principal=principal, now=now) for cdr in cdrs]


def _var(variables: dict[str, Any], name: str) -> str | None:
    value = variables.get(name)
    if value is None:
        return None
    return unquote(value) if isinstance(value, str) else str(value)


def _profiles(cdr: dict[str, Any]) -> list[dict[str, Any]]:
    flows = [f for f in cdr.get("callflow") or () if isinstance(f, dict)]

    def index(flow: dict[str, Any]) -> int:
        raw = flow.get("profile_index")
        return int(raw) if isinstance(raw, str) and raw.isdigit() else 0

    # Newest pass first, whatever order the body used: the current profile is where the
    # call ended up (after transfers and dialplan rewrites), the last is what was dialled.
    return sorted(flows, key=index, reverse=True)


def _uuids(profile: dict[str, Any], side: str) -> list[str]:
    group = profile.get(side)
    if not isinstance(group, dict):
        return []
    found = group.get(f"{side}_caller_profiles")
    out: list[str] = []
    for p in found if isinstance(found, list) else ():
        if isinstance(p, dict) and isinstance(p.get("uuid"), str) and p["uuid"] not in out:
            out.append(p["uuid"])
    return out


def _disposition(variables: dict[str, Any], billsec: int) -> str:
    answer = _var(variables, "answer_epoch")
    answered = answer not in (None, "", "0") if answer is not None else billsec > 0
    if answered:
        return "ANSWERED"
    cause = (_var(variables, "hangup_cause") or "").upper()
    return _UNANSWERED.get(cause, "FAILED")


def parse_cdr(cdr: object, *, principal: Principal, now: datetime) -> ParseResult:
    if not isinstance(cdr, dict):
        return Refused(MALFORMED_RECORD, "a mod_json_cdr CDR is a JSON object")
    variables = cdr.get("variables")
    profiles = _profiles(cdr)
    caller_profiles = [
        p["caller_profile"] for p in profiles if isinstance(p.get("caller_profile"), dict)
    ]
    if not isinstance(variables, dict) or not caller_profiles:
        return Refused(MALFORMED_RECORD, "not a mod_json_cdr CDR: no variables or callflow")
    current = caller_profiles[0]
    uuid = _var(variables, "uuid") or current.get("uuid")
    originators = [u for p in caller_profiles for u in _uuids(p, "originator")]
    a_leg = originators[0] if originators else _var(variables, "originating_leg_uuid")
    if a_leg:
        return Refused(
            NOT_BILLED_B_LEG,
            f"B-leg {uuid} of the call {a_leg}: billed once, on its A-leg; not stored",
        )
    try:
        return Parsed(*_a_leg(variables, caller_profiles, uuid, principal=principal, now=now))
    except Rejected as exc:
        return Refused(exc.code or MALFORMED_RECORD, exc.message)


def _profile_value(profile: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = profile.get(name)
        if isinstance(value, str) and value:
            return unquote(value)
    return None


def _a_leg(
    variables: dict[str, Any],
    caller_profiles: list[dict[str, Any]],
    uuid: object,
    *,
    principal: Principal,
    now: datetime,
) -> tuple[CdrSubmitted, str | None]:
    current, first = caller_profiles[0], caller_profiles[-1]
    origin = text(
        _profile_value(current, "caller_id_number", "ani", "username"),
        limit=ORIGIN_LIMIT,
        code=ORIGIN_INVALID,
        name="caller_id_number",
        required=True,
    )
    target = text(
        _profile_value(current, "destination_number"),
        limit=DESTINATION_LIMIT,
        code=DESTINATION_INVALID,
        name="destination_number",
        required=True,
    )
    # Billed seconds are the talk time FreeSWITCH measured; the rest of the leg rang.
    billsec = parse_duration(_var(variables, "billsec"))
    total_raw = _var(variables, "duration")
    total = (
        parse_whole(total_raw, code=DURATION_INVALID, name="duration", maximum=MAX_DURATION * 2)
        if total_raw not in (None, "")
        else None
    )
    ring = max(total - billsec, 0) if total is not None else None
    code = account_code(_var(variables, "accountcode"))
    external_id = pbx_id(uuid, "uuid")
    epoch = _var(variables, "start_epoch")
    start = (
        epoch_start(int(epoch))
        if epoch and epoch.isascii() and epoch.isdigit() and epoch != "0"
        else None
    )
    start_time, start_raw = start_fields(
        start, epoch if epoch not in (None, "0") else None, duration=billsec, now=now
    )
    extra: dict[str, Any] = {"uuid": external_id, "leg": "A"}
    b_legs = [u for p in caller_profiles for u in _uuids(p, "originatee")]
    bridged = _var(variables, "bridge_uuid") or _var(variables, "last_bridge_to")
    if bridged and bridged not in b_legs:
        b_legs.append(bridged)
    if b_legs:
        extra["b_leg_uuids"] = list(dict.fromkeys(b_legs))
    for key, value in (
        ("hangup_cause", _var(variables, "hangup_cause")),
        ("caller_id_name", _profile_value(current, "caller_id_name")),
        ("context", _profile_value(current, "context")),
        ("chan_name", _profile_value(current, "chan_name")),
        ("dialed_number", _profile_value(first, "destination_number")),
        ("sip_hangup_disposition", _var(variables, "sip_hangup_disposition")),
    ):
        if value:
            extra[key] = value
    if extra.get("dialed_number") == target:
        del extra["dialed_number"]
    recording = _recording(variables)
    assert origin is not None and target is not None
    event = make_event(
        principal,
        now=now,
        source="freeswitch",
        originating_number=origin,
        destination_number=target,
        duration=billsec,
        start_time=start_time,
        start_time_raw=start_raw,
        disposition=_disposition(variables, billsec),
        ring_seconds=ring,
        account_code=code,
        external_id=external_id,
        extra=check_extra(extra),
        recording_url=recording,
    )
    return event, f"freeswitch:{external_id}" if external_id else None


def _recording(variables: dict[str, Any]) -> str | None:
    """The channel variable `record` (seed 003's name) or `recording_url`, which a dialplan
    sets to where its recording will be (`set recording_url=https://...`); percent-decoded
    like every variable."""
    given = [(n, v) for n in ("record", "recording_url") if (v := _var(variables, n))]
    if not given:
        return None
    name, value = given[0]
    if any(other != value for _, other in given[1:]):
        raise Rejected(
            "variables record and recording_url differ; set the recording URL once",
            code=RECORDING_URL_INVALID,
        )
    return recording_url(value, name=f"variables.{name}")
