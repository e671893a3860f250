"""The resume file of `cdrflow submit`: which batches are finished and what they were answered.

Batches finish out of order (several are in flight), so the file holds a watermark (every
position before it is done) plus the finished ranges beyond it. It is replaced atomically
(temp file, fsync, rename, fsync of the directory): a crash leaves the old file or the new
one, never half of one. A batch that was in flight is not in the file and is sent again on
resume; the server's dedupe answers 50421 for what it already took.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdr_ingest.submit_files import Source

VERSION = 1


class StateError(Exception):
    """The state file cannot be used for this input; the message says what to do."""


def default_state_path(input_path: Path) -> Path:
    return input_path.with_name(input_path.name + ".cdrflow-state")


@dataclass
class SubmitState:
    path: Path
    input: dict[str, Any]
    format: str
    watermark: int = 0
    done: dict[int, int] = field(default_factory=dict)  # start -> end, beyond the watermark
    counts: Counter[int] = field(default_factory=Counter)
    resumed: bool = False

    @classmethod
    def open(cls, path: Path, source: Source, *, restart: bool) -> SubmitState:
        """The saved state for `source`, or a fresh one (always fresh with `restart`)."""
        fresh = cls(path, source.fingerprint(), source.format.value)
        if restart or not path.exists():
            return fresh
        try:
            saved = json.loads(path.read_text("utf-8"))
            state = cls(
                path,
                dict(saved["input"]),
                str(saved["format"]),
                int(saved["watermark"]),
                {int(s): int(e) for s, e in saved["done"]},
                Counter({int(code): int(n) for code, n in saved["counts"].items()}),
                resumed=True,
            )
            version = int(saved["version"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StateError(
                f"state file {path} is unreadable ({exc}); pass --restart to start over"
            ) from None
        if version != VERSION or state.format != source.format.value:
            raise StateError(
                f"state file {path} was written for {state.format} input (version {version}); "
                "pass --restart to start over, or --state to use another file"
            )
        if not source.matches(state.input):
            raise StateError(
                f"state file {path} belongs to a different input than {source.path} "
                "(its path or first bytes changed); pass --restart to start over, "
                "or --state to use another file"
            )
        return state

    def is_done(self, key: tuple[int, int]) -> bool:
        start, end = key
        return end <= self.watermark or self.done.get(start) == end

    def finish(self, key: tuple[int, int], counts: Counter[int]) -> None:
        """Record a batch as answered; advance the watermark over contiguous finished ranges."""
        start, end = key
        self.counts.update(counts)
        self.done[start] = end
        while self.watermark in self.done:
            self.watermark = self.done.pop(self.watermark)

    @property
    def completed(self) -> int:
        """Positions finished (for the progress bar)."""
        return self.watermark + sum(end - start for start, end in self.done.items())

    @property
    def records(self) -> int:
        return sum(self.counts.values())

    def save(self) -> None:
        body = {
            "version": VERSION,
            "input": self.input,
            "format": self.format,
            "watermark": self.watermark,
            "done": sorted(self.done.items()),
            "counts": {str(code): n for code, n in sorted(self.counts.items())},
        }
        temp = self.path.with_name(self.path.name + ".tmp")
        with temp.open("w", encoding="utf-8") as f:
            json.dump(body, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
