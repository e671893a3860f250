"""Dedupe (50421) and daily limit (50429): decides a list of validated submissions at once.

Pure decisions over two ports, a `KeyStore` (PostgreSQL, in repository.py) and an
`EventSink` (Kafka, in publisher.py); no web framework, broker client or SQL toolkit here.

The order, for one list (one API account, one request or one batch):
1. `KeyStore.admit`, one transaction: each key is inserted with a fresh cdr_id or found with
   the cdr_id it was first given; records that need a slot of the daily limit (new keys and
   keyless records) reserve it with one conditional increment. Committed before producing,
   so a crash after the broker's ack still leaves the key naming the cdr_id on Kafka.
2. The admitted records are produced (one round trip), a key found never acknowledged with
   its original cdr_id: the rater stores a cdr_id once, so a re-produce stores nothing twice.
3. `KeyStore.acknowledge` marks the produced keys acknowledged; the request whose mark wins
   answers 0, any other concurrent request for the key answers 50421 (the record is durable:
   the winner's produce was acknowledged). Only an acknowledged key is ever a 50421, so a PBX
   told 50503, or whose request timed out, is never told 50421 for a record never on Kafka.
A key keeps its slot while unacknowledged (its retry is not counted again); a keyless record
whose produce failed gives its slot back.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, NamedTuple, Protocol
from zoneinfo import ZoneInfo

from cdr_ingest.service import ACCEPTED, DAILY_LIMIT, DUPLICATE, UNAVAILABLE
from cdrmodel.events import CdrSubmitted

if TYPE_CHECKING:
    from opentelemetry.context import Context

log = logging.getLogger(__name__)

KIND_EXTERNAL_ID = 1
KIND_NATURAL = 2
KIND_SOURCE = 3  # an identity the PBX format defines (FreeSWITCH A-leg uuid, Asterisk line)


class Unavailable(Exception):
    """PostgreSQL or Kafka could not be reached: the records concerned answer 50503."""


# Named tuples rather than frozen dataclasses: a 10,000-record batch builds tens of thousands
# of these, and a frozen dataclass's __init__ cost a fifth of the batch's CPU in a profile.
class DedupeKey(NamedTuple):
    kind: int
    digest: bytes  # sha256 of the canonical key; the tenant is a column beside it


def key_for(event: CdrSubmitted, *, start_given: bool) -> DedupeKey | None:
    """Contract §2: ExternalID; else, only when a start time was given, the natural key."""
    external_id = event.external_id
    if external_id is not None:
        # _digest("x", external_id), written out: the common key of a batch, built per record.
        return DedupeKey(KIND_EXTERNAL_ID, _sha256(("x\x1f" + external_id).encode()).digest())
    if not start_given:
        return None  # a start time made up from the arrival time would never repeat
    # The parsed instant, so the same time in two of the accepted forms is one key.
    start = (
        event.start_time.isoformat(timespec="microseconds")
        if event.start_time is not None
        else "raw:" + (event.start_time_raw or "")
    )
    natural = (event.originating_number, event.destination_number, start, str(event.duration))
    return DedupeKey(KIND_NATURAL, _digest("n", *natural))


def source_key(identity: str) -> DedupeKey:
    """A parser's own identity for a record (`Parsed.dedupe_key`): it replaces the contract's
    rule for that record, so a forked Asterisk dial (one uniqueid, two lines) is two calls."""
    return DedupeKey(KIND_SOURCE, _digest("s", identity))


_sha256 = hashlib.sha256


def _digest(*parts: str) -> bytes:
    # The unit separator cannot occur in a field (control characters are refused at the edge).
    return hashlib.sha256("\x1f".join(parts).encode()).digest()


def tenant_day(now: datetime, timezone: str) -> date:
    """The calendar day of `now` in the tenant's zone (the daily limit's day)."""
    try:
        zone = ZoneInfo(timezone)
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    return now.astimezone(zone).date()


class Admitted(enum.Enum):
    NEW = "new"  # key inserted now (or keyless), slot reserved: produce
    PENDING = "pending"  # key known, never acknowledged: produce again with its cdr_id
    ACKNOWLEDGED = "acknowledged"  # a client was told 0 for it: 50421
    OVER_LIMIT = "over_limit"  # no slot left today: 50429, nothing kept


class Admission(NamedTuple):
    status: Admitted
    cdr_id: uuid.UUID


class Candidate(NamedTuple):
    key: DedupeKey | None
    cdr_id: uuid.UUID  # used when the key is new (or the record keyless)


class KeyStore(Protocol):
    async def admit(
        self,
        *,
        database_id: str,
        api_account: str,
        day: date,
        limit: int | None,
        candidates: Sequence[Candidate],
    ) -> list[Admission]:
        """One Admission per candidate, in order; candidates' keys are distinct."""

    async def acknowledge(self, *, database_id: str, digests: Sequence[bytes]) -> set[bytes]:
        """Marks the keys acknowledged; returns the digests this call marked."""

    async def release(self, *, database_id: str, api_account: str, day: date, count: int) -> None:
        """Gives back `count` slots of the day (keyless records whose produce failed)."""


class EventSink(Protocol):
    async def publish_many(
        self, events: Sequence[CdrSubmitted], *, origins: Sequence[Context | None] | None = None
    ) -> list[bool]:
        """Produces every event in one round trip; True where the broker acknowledged.
        `origins`: each event's trace context, when they came from several requests."""


class Outcome(NamedTuple):
    code: int
    cdr_id: uuid.UUID | None = None


def allocate(needs_slot: Sequence[bool], remaining: int) -> list[bool]:
    """Which records get one of the `remaining` slots: the first ones that need one, in order."""
    granted = []
    for needs in needs_slot:
        ok = needs and remaining > 0
        remaining -= ok
        granted.append(ok or not needs)
    return granted


class Submitter:
    """Decides lists of submissions of one API account.

    Seam for group commit: concurrent single-record requests of one account may be gathered
    into one `submit` call (one admit statement, one produce batch, one acknowledge).
    """

    def __init__(self, store: KeyStore, sink: EventSink) -> None:
        self._store = store
        self._sink = sink

    async def submit(
        self,
        *,
        database_id: str,
        api_account: str,
        timezone: str,
        daily_limit: int | None,
        events: Sequence[CdrSubmitted],
        keys: Sequence[DedupeKey | None],
        now: datetime,
        origins: Sequence[Context | None] | None = None,
    ) -> list[Outcome]:
        """One Outcome per event, in order. `origins` (tracing on, a group commit): the trace
        context of each event's request, which its Kafka record continues."""
        # A key repeated within the list: only its first occurrence goes further.
        first: dict[bytes, int] = {}
        follows: dict[int, int] = {}
        unique: list[int] = []
        for i, key in enumerate(keys):
            if key is not None and key.digest in first:
                follows[i] = first[key.digest]
                continue
            if key is not None:
                first[key.digest] = i
            unique.append(i)
        day = tenant_day(now, timezone)
        candidates = [Candidate(keys[i], events[i].cdr_id) for i in unique]
        outcomes: dict[int, Outcome] = {}
        try:
            admissions = await self._store.admit(
                database_id=database_id,
                api_account=api_account,
                day=day,
                limit=daily_limit,
                candidates=candidates,
            )
        except Unavailable:
            return [Outcome(UNAVAILABLE) for _ in events]
        to_send: list[tuple[int, CdrSubmitted]] = []
        for i, admission in zip(unique, admissions, strict=True):
            if admission.status is Admitted.ACKNOWLEDGED:
                outcomes[i] = Outcome(DUPLICATE, admission.cdr_id)
            elif admission.status is Admitted.OVER_LIMIT:
                outcomes[i] = Outcome(DAILY_LIMIT)
            else:
                event = events[i]
                if event.cdr_id != admission.cdr_id:
                    event = event.model_copy(update={"cdr_id": admission.cdr_id})
                to_send.append((i, event))
        sent: list[bool] = []
        if to_send:
            batch = [e for _, e in to_send]
            if origins is None:
                sent = await self._sink.publish_many(batch)
            else:
                of = origins
                sent = await self._sink.publish_many(batch, origins=[of[i] for i, _ in to_send])
        produced = [(i, e) for (i, e), ok in zip(to_send, sent, strict=True) if ok]
        digests = [k.digest for i, _ in produced if (k := keys[i]) is not None]
        marked: set[bytes] | None = set()
        if digests:
            try:
                marked = await self._store.acknowledge(database_id=database_id, digests=digests)
            except Unavailable:
                # The records are durable on Kafka: they are answered 0; a retry of one finds
                # its key unacknowledged, produces it again (stored once) and is answered 0.
                log.warning("acknowledging %d keys failed; answered 0 anyway", len(digests))
                marked = None
        for i, event in produced:
            key = keys[i]
            won = key is None or marked is None or key.digest in marked
            outcomes[i] = Outcome(ACCEPTED if won else DUPLICATE, event.cdr_id)
        failed_keyless = 0
        for (i, _), ok in zip(to_send, sent, strict=True):
            if not ok:
                outcomes[i] = Outcome(UNAVAILABLE)
                failed_keyless += keys[i] is None
        if failed_keyless and daily_limit is not None:
            try:
                await self._store.release(
                    database_id=database_id, api_account=api_account, day=day, count=failed_keyless
                )
            except Unavailable:
                log.warning("releasing %d daily-limit slots failed", failed_keyless)
        for i, leader in follows.items():
            lead = outcomes[leader]
            outcomes[i] = Outcome(DUPLICATE, lead.cdr_id) if lead.code == ACCEPTED else lead
        return [outcomes[i] for i in range(len(events))]
