"""Input files of `cdrflow submit`, read as a stream and cut into request-sized batches.

Pure (files only, no network): a record is the raw bytes the server parses, never re-encoded,
because re-serialising would change an Asterisk line's identity (its dedupe key hashes the
bytes) and lose the repeated `"callflow"` keys of old mod_json_cdr documents.

Every record sits at a *position*: a byte offset in a Master.csv or NDJSON file, a document
number in one FreeSWITCH file, a file number in a directory of them. A batch covers the
half-open range [start, end) of positions, so the state file can say "everything before
`watermark` is done" and a resumed run seeks there instead of re-reading a multi-GB file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cdr_ingest.parsing.common import MAX_BODY_BYTES, MAX_RECORDS, NOT_AN_OBJECT

_BOM = b"\xef\xbb\xbf"
# Bytes of the head a state file remembers: enough to tell two exports apart, little to read.
HEAD_BYTES = 64 * 1024


class InputError(Exception):
    """The input cannot be read as the format it was taken for; the message says why."""


class InputFormat(StrEnum):
    ASTERISK = "asterisk"
    NDJSON = "ndjson"
    FREESWITCH = "freeswitch"


@dataclass(frozen=True)
class Endpoint:
    path: str
    content_type: str


ENDPOINTS = {
    InputFormat.ASTERISK: Endpoint("/v1/pbx/asterisk", "text/csv"),
    InputFormat.NDJSON: Endpoint("/v1/cdrs", "application/x-ndjson"),
    InputFormat.FREESWITCH: Endpoint("/v1/pbx/freeswitch", "application/json"),
}

_SUFFIXES = {
    ".csv": InputFormat.ASTERISK,
    ".ndjson": InputFormat.NDJSON,
    ".jsonl": InputFormat.NDJSON,
    ".json": InputFormat.FREESWITCH,
}


def detect_format(path: Path, requested: InputFormat | None = None) -> InputFormat:
    if requested is not None:
        return requested
    if path.is_dir():
        return InputFormat.FREESWITCH
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise InputError(
            f"cannot tell the format of {path.name} from its name "
            "(.csv, .ndjson, .jsonl, .json or a directory); pass --format"
        )
    return found


@dataclass
class Batch:
    """Records from positions [start, end); `refused` are documents that could not be read
    locally (counted as 50400, never sent)."""

    start: int
    end: int
    records: list[bytes] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, int]:
        return (self.start, self.end)


def encode_body(fmt: InputFormat, records: Sequence[bytes]) -> bytes:
    """The request body for `records`: lines for CSV and NDJSON, a JSON array for FreeSWITCH."""
    if fmt is InputFormat.FREESWITCH:
        return b"[" + b",".join(records) + b"]"
    return b"".join(r + b"\n" for r in records)


def _record_cost(record: bytes) -> int:
    # A newline or a comma after each record; the array's brackets fit in the slack below.
    return len(record) + 1


class Source:
    """One input (file or directory) in one format: its positions, fingerprint and records."""

    def __init__(self, path: Path, fmt: InputFormat) -> None:
        self.path = path
        self.format = fmt
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
        self._files: list[Path] = []
        self._documents: list[bytes | str] | None = None
        if path.is_dir():
            if fmt is not InputFormat.FREESWITCH:
                raise InputError(f"{path} is a directory; only --format freeswitch reads those")
            self._files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".json")

    @property
    def total(self) -> int:
        """The position after the last record (bytes, documents or files)."""
        if self.path.is_dir():
            return len(self._files)
        if self.format is InputFormat.FREESWITCH:
            return len(self._split_file())
        return self.path.stat().st_size

    @property
    def unit(self) -> str:
        if self.path.is_dir():
            return "files"
        return "documents" if self.format is InputFormat.FREESWITCH else "bytes"

    def fingerprint(self) -> dict[str, Any]:
        """What ties a state file to this input. A Master.csv that grew (Asterisk appends)
        still matches: only its head is compared, and the rest is read again from the
        watermark. A directory matches only with the same files."""
        resolved = str(self.path.resolve())
        if self.path.is_dir():
            digest = hashlib.sha256()
            for file in self._files:
                st = file.stat()
                digest.update(f"{file.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            return {"path": resolved, "files": len(self._files), "digest": digest.hexdigest()}
        with self.path.open("rb") as f:
            head = f.read(HEAD_BYTES)
        return {
            "path": resolved,
            "head_bytes": len(head),
            "head_sha256": hashlib.sha256(head).hexdigest(),
        }

    def matches(self, remembered: dict[str, Any]) -> bool:
        if str(self.path.resolve()) != remembered.get("path"):
            return False
        if self.path.is_dir():
            return self.fingerprint() == remembered
        size = int(remembered.get("head_bytes", -1))
        with self.path.open("rb") as stream:
            head = stream.read(size) if size >= 0 else b""
        return len(head) == size and hashlib.sha256(head).hexdigest() == remembered.get(
            "head_sha256"
        )

    def records(self, start: int = 0) -> Iterator[tuple[bytes | str, int]]:
        """(record, position after it) from `start` on; a `str` is a document that could not
        be read, with the reason."""
        if self.path.is_dir():
            for number in range(start, len(self._files)):
                file = self._files[number]
                for doc in _json_documents(file.read_bytes(), file.name):
                    yield doc, number + 1
        elif self.format is InputFormat.FREESWITCH:
            docs = self._split_file()
            for number in range(start, len(docs)):
                yield docs[number], number + 1
        else:
            yield from self._lines(start)

    def _split_file(self) -> list[bytes | str]:
        # mod_json_cdr writes one small document a call; a file of many is an export a person
        # made, read whole because its documents must be found by parsing anyway.
        if self._documents is None:
            self._documents = list(_json_documents(self.path.read_bytes(), self.path.name))
        return self._documents

    def _lines(self, start: int) -> Iterator[tuple[bytes, int]]:
        position = start
        header_possible = self.format is InputFormat.ASTERISK and start == 0
        with self.path.open("rb") as f:
            f.seek(start)
            for line in f:
                if position == 0 and line.startswith(_BOM):
                    line = line[len(_BOM) :]
                    position += len(_BOM)
                position += len(line)
                record = line.rstrip(b"\r\n")
                if not record.strip():
                    continue
                if header_possible:
                    header_possible = False
                    if _is_header(record):
                        continue
                yield record, position


def _is_header(line: bytes) -> bool:
    return line.lower().replace(b'"', b"").startswith(b"accountcode,src,dst")


def _json_documents(data: bytes, name: str) -> Iterator[bytes | str]:
    """The raw bytes of each JSON value in `data`: one document, several one after another,
    or the elements of one top-level array. Unreadable input yields one `str` saying why."""
    try:
        text = data.removeprefix(_BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        yield f"{name}: not UTF-8 ({exc.reason} at byte {exc.start})"
        return
    decoder = json.JSONDecoder()
    index = _skip_space(text, 0)
    in_array = text.startswith("[", index)
    if in_array:
        index = _skip_space(text, index + 1)
        if text.startswith("]", index):
            return
    while index < len(text):
        try:
            _, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError as exc:
            yield f"{name}: not JSON ({exc.msg} at character {exc.pos})"
            return
        yield text[index:end].encode("utf-8")
        index = _skip_space(text, end)
        if in_array:
            if text.startswith(",", index):
                index = _skip_space(text, index + 1)
            elif text.startswith("]", index):
                index = _skip_space(text, index + 1)
                in_array = False
            else:
                yield f"{name}: not JSON (expected ',' or ']' at character {index})"
                return


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def batches(
    records: Iterator[tuple[bytes | str, int]],
    *,
    start: int,
    size: int,
    max_bytes: int = MAX_BODY_BYTES,
) -> Iterator[Batch]:
    """Consecutive batches of at most `size` records and `max_bytes` of body. A record too
    large for any body goes alone (the server answers 413 for it, counted)."""
    size = max(1, min(size, MAX_RECORDS))
    budget = max_bytes - 2
    batch = Batch(start, start)
    used = 0
    for record, after in records:
        if isinstance(record, str):
            batch.refused.append(record)
            batch.end = after
            continue
        cost = _record_cost(record)
        if batch.records and (len(batch.records) >= size or used + cost > budget):
            yield batch
            batch = Batch(batch.end, batch.end)
            used = 0
        batch.records.append(record)
        batch.end = after
        used += cost
    if batch.records or batch.refused:
        yield batch


LOCALLY_REFUSED = NOT_AN_OBJECT
