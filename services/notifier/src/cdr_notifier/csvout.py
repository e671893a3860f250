"""CSV answers of the query APIs: one header, then rows, written a chunk at a time.

The feed, `/v1/cdrs?format=csv` and the reports share it. A stored record carries, besides
the contract's fields, whatever else its PBX sent, which differs from record to record; a
CSV needs one header, so it has the contract's fields (`RECORD_COLUMNS`) and the rest
travels JSON-encoded in one `extra` column. Values that are lists or objects are written as
JSON, None as an empty cell.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from fastapi.responses import Response, StreamingResponse

# The contract's record fields (contract §3 "The stored record"), in the order columns show.
RECORD_COLUMNS: tuple[str, ...] = (
    "feed_id",
    "revision",
    "cdr_id",
    "external_id",
    "database_id",
    "api_account",
    "account",
    "extension",
    "start_time",
    "time",
    "caller",
    "target",
    "did",
    "duration",
    "dialtime",
    "billed_seconds",
    "type",
    "status",
    "disposition",
    "direction",
    "call_type",
    "call_billing",
    "destination_name",
    "matched_prefix",
    "rate",
    "total",
    "cost",
    "price",
    "currency",
    "rated",
    "unrated_reason",
    "ivruniqueid",
    "account_code",
    "record",
)
_KNOWN = frozenset(RECORD_COLUMNS)

# OpenAPI `responses` of a route whose 200 may also be `format=csv`.
CSV_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}}
}


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), default=str)
    return value


def record_row(record: Mapping[str, Any], columns: Sequence[str] = RECORD_COLUMNS) -> list[Any]:
    """A rendered record (cdrmodel.record.render_record) as cells of `columns` + `extra`."""
    rest = {k: v for k, v in record.items() if k not in _KNOWN}
    return [_cell(record.get(c)) for c in columns] + [_cell(rest) if rest else ""]


def record_header(columns: Sequence[str] = RECORD_COLUMNS) -> list[str]:
    return [*columns, "extra"]


class _Lines:
    """csv.writer into a buffer that is emptied after every chunk."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")

    def write(self, rows: Iterable[Sequence[Any]]) -> bytes:
        self._writer.writerows([_cell(v) for v in row] for row in rows)
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text.encode()


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """A whole CSV document (for answers that are small: a page, a report)."""
    lines = _Lines()
    return lines.write([header]) + lines.write(rows)


async def csv_chunks(
    header: Sequence[str], pages: AsyncIterable[Iterable[Sequence[Any]]]
) -> AsyncIterator[bytes]:
    """The header, then one chunk per page of rows: memory holds one page at a time."""
    lines = _Lines()
    yield lines.write([header])
    async for page in pages:
        chunk = lines.write(page)
        if chunk:
            yield chunk


def csv_response(body: bytes | AsyncIterator[bytes], filename: str) -> Response:
    """`text/csv` with a download name: `body` whole, or as chunks streamed as they come."""
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    media = "text/csv; charset=utf-8"
    if isinstance(body, bytes):
        return Response(body, media_type=media, headers=headers)
    return StreamingResponse(body, media_type=media, headers=headers)
