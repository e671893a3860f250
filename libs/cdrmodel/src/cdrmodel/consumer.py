"""One batch mechanism for every consumer: decode, store in one transaction, keep poison once.

Consistency order of a consumed batch (run_batches calls `BatchProcessor.handle`):

1. Decode each record. One that cannot be decoded is a rejection `malformed`.
2. The stage's `store` step runs inside ONE transaction that this module opens and commits.
   It may itself reject records (the rater: `unknown_tenant`). Every rejection of the batch is
   inserted into `rejected_event` in that same transaction, so the batch and its rejections
   commit together or not at all.
3. If the transaction fails because of a record (cdrmodel.db.record_fault: PostgreSQL refused
   a value, SQLSTATE classes 22 and 23), the batch is split in halves and each half retried the same way, down to a
   single record, which is then rejected `unstorable` with the error text in its own small
   transaction. One bad record costs about 2·log2(batch) extra transactions and never holds
   back its partition. Any other failure (a deadlock, a timeout, a lost connection, a schema
   the code does not match, a bug raising a Python exception) is raised instead: run_batches retries the whole batch, and no
   record is ever set aside for it.
4. After every transaction has committed, and with none open, the optional `publish` step
   runs (the rater produces cdr.rated.v1 there).
5. handle() returns; only then does run_batches commit the offsets.

A crash anywhere replays the batch. `rejected_event` is unique on (stage, topic, partition,
offset) and inserted with ON CONFLICT DO NOTHING, so a replay rejects nothing twice, and the
stages' own unique keys absorb the records stored again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from aiokafka import ConsumerRecord
from prometheus_client import Counter
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cdrmodel import tracing
from cdrmodel.db import pg_text, record_fault, rejected_event

log = logging.getLogger(__name__)

REJECTED = Counter(
    "cdrflow_rejected_events_total",
    "Consumed records set aside in rejected_event (counted once, replays excluded)",
    ["stage", "reason"],
)

E = TypeVar("E")
R = TypeVar("R")

_ERROR_CHARS = 2000


def _text(value: str) -> str:
    # The error of a NUL-carrying record may quote it.
    return pg_text(value, _ERROR_CHARS)


def describe(exc: BaseException) -> str:
    return _text(f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class Item(Generic[E]):
    """A decoded event with the record it came from."""

    record: ConsumerRecord
    event: E


@dataclass(frozen=True)
class Rejection:
    record: ConsumerRecord
    reason: str
    error: str


@dataclass
class Stored(Generic[R]):
    """What a store step did: results for the publish step, and records it refused."""

    results: list[R] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


StoreStep = Callable[[AsyncConnection, list[Item[E]]], Awaitable[Stored[R]]]
PublishStep = Callable[[list[R]], Awaitable[None]]


async def insert_rejections(
    conn: AsyncConnection, *, stage: str, rejections: list[Rejection]
) -> list[Rejection]:
    """Keep each rejection once; answers the ones that were new (a replay's are not)."""
    if not rejections:
        return []
    rows = [
        {
            "stage": stage,
            "topic": r.record.topic,
            "partition": r.record.partition,
            "offset": r.record.offset,
            "key": r.record.key,
            "value": r.record.value,
            "reason": r.reason,
            "error": _text(r.error),
        }
        for r in rejections
    ]
    stmt = (
        pg_insert(rejected_event)
        .on_conflict_do_nothing(index_elements=["stage", "topic", "partition", "offset"])
        .returning(rejected_event.c.topic, rejected_event.c.partition, rejected_event.c.offset)
    )
    result = await conn.execute(stmt, rows)
    new = {(row.topic, row.partition, row.offset) for row in result}
    return [r for r in rejections if (r.record.topic, r.record.partition, r.record.offset) in new]


class BatchProcessor(Generic[E, R]):
    """The batch handler of one stage (consumer group); see the module docstring for order."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        stage: str,
        decode: Callable[[bytes], E],
        store: StoreStep[E, R],
        publish: PublishStep[R] | None = None,
    ) -> None:
        self._engine = engine
        self._stage = stage
        self._decode = decode
        self._store_step = store
        self._publish = publish

    async def handle(self, records: list[ConsumerRecord]) -> None:
        # A `process` span per record while tracing is on (cdrmodel.tracing: the stages read
        # each record's context there); nothing otherwise.
        with tracing.consuming(records, group=self._stage):
            await self._handle(records)

    async def _handle(self, records: list[ConsumerRecord]) -> None:
        items: list[Item[E]] = []
        malformed: list[Rejection] = []
        for rec in records:
            try:
                if rec.value is None:
                    raise ValueError("the message has no value")
                items.append(Item(rec, self._decode(rec.value)))
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                malformed.append(Rejection(rec, "malformed", describe(exc)))
        results = await self._store(items, malformed)
        if self._publish is not None and results:
            await self._publish(results)

    async def _store(self, items: list[Item[E]], rejected: list[Rejection]) -> list[R]:
        """`items` and the `rejected` carried with them in one transaction; on a refusal,
        halves (the carried rejections ride with the first half)."""
        try:
            async with self._engine.begin() as conn:
                out = await self._store_step(conn, items) if items else Stored[R]()
                new = await insert_rejections(
                    conn, stage=self._stage, rejections=[*rejected, *out.rejected]
                )
        except Exception as exc:
            if not record_fault(exc) or not items:
                # Not a record's doing (passing trouble, a schema the code does not match, a
                # bug): run_batches retries the whole batch, nothing is set aside. No items:
                # the rejections alone cannot be written, and dropping them would lose records.
                raise
            if len(items) == 1:
                return await self._reject_alone(items[0], rejected, exc)
            log.warning(
                "%s: a batch of %d was refused (%s); narrowing", self._stage, len(items), exc
            )
            mid = len(items) // 2
            return await self._store(items[:mid], rejected) + await self._store(items[mid:], [])
        self._count(new)
        return out.results

    async def _reject_alone(
        self, item: Item[E], carried: list[Rejection], exc: BaseException
    ) -> list[R]:
        rejection = Rejection(item.record, "unstorable", describe(exc))
        async with self._engine.begin() as conn:
            new = await insert_rejections(conn, stage=self._stage, rejections=[*carried, rejection])
        self._count(new)
        return []

    def _count(self, new: list[Rejection]) -> None:
        for r in new:
            REJECTED.labels(self._stage, r.reason).inc()
            log.error(
                "%s: rejected %s:%s:%s (%s): %s",
                self._stage,
                r.record.topic,
                r.record.partition,
                r.record.offset,
                r.reason,
                r.error,
            )
