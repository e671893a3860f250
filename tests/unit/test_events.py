"""CDR ids: UUIDv7 from uuid-utils, handed out as the stdlib type pydantic and asyncpg take."""

from __future__ import annotations

import time
import uuid

from cdrmodel.events import CdrSubmitted, new_cdr_id


def test_cdr_ids_are_stdlib_uuid_version_7() -> None:
    cdr_id = new_cdr_id()
    assert type(cdr_id) is uuid.UUID
    assert cdr_id.version == 7 and cdr_id.variant == uuid.RFC_4122


def test_cdr_ids_carry_the_time_and_sort_in_creation_order() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_cdr_id() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    # Strictly increasing, also within one millisecond: ids of one tenant sort by arrival.
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    stamps = [cdr_id.int >> 80 for cdr_id in ids]  # the first 48 bits: Unix milliseconds
    assert before <= stamps[0] <= stamps[-1] <= after


def test_cdr_id_survives_the_event_round_trip() -> None:
    cdr_id = new_cdr_id()
    event = CdrSubmitted(
        cdr_id=cdr_id,
        database_id="DB1",
        api_account="ACC",
        received_at="2026-01-15T12:00:00Z",  # type: ignore[arg-type]
        originating_number="100",
        destination_number="16138220000",
        duration=90,
    )
    assert CdrSubmitted.model_validate_json(event.model_dump_json()).cdr_id == cdr_id
