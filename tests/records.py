"""Test data for consumer handlers: Kafka records as a consumer would hand them over."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import ConsumerRecord

from cdrmodel.events import CdrSubmitted, new_cdr_id


def consumer_record(
    topic: str, offset: int, value: bytes | None, *, key: bytes | None = None, partition: int = 0
) -> ConsumerRecord:
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=[],
    )


def submitted(database_id: str, account: str, **fields: object) -> CdrSubmitted:
    """A cdr.submitted.v1 event as ingest would publish it."""
    base: dict[str, object] = {
        "cdr_id": new_cdr_id(),
        "database_id": database_id,
        "api_account": account,
        "received_at": datetime.now(UTC),
        "originating_number": "100",
        "destination_number": "16138220000",
        "start_time": datetime.now(UTC),
        "duration": 60,
    }
    base.update(fields)
    return CdrSubmitted.model_validate(base)
