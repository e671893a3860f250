"""Time-of-day bands of deck lines (`mon-fri 08:00-18:00`, `sat-sun`, `default`).

A band is kept as the set of minutes of the week it covers (a bit mask over 7 x 1440
minutes), so a call's start is tested with one shift and two bands compare by how much of
the week they cover. Bands are wall-clock times of the tenant's zone: see docs/rating.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import lru_cache

DAY_MINUTES = 1440
WEEK_MINUTES = 7 * DAY_MINUTES
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT = "default"
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")


@dataclass(frozen=True, slots=True)
class Band:
    """The minutes of the week a deck line applies to; `text` is its canonical spelling."""

    text: str
    mask: int

    @property
    def minutes(self) -> int:
        """How much of the week the band covers: the narrower of two bands is the more specific."""
        return self.mask.bit_count()

    def contains(self, local: datetime) -> bool:
        """Whether a wall-clock time (already in the tenant's zone) falls in the band."""
        minute = local.weekday() * DAY_MINUTES + local.hour * 60 + local.minute
        return bool(self.mask >> minute & 1)

    def contains_at(self, at: datetime, zone: tzinfo) -> bool:
        return self.contains(at.astimezone(zone))


def _day(name: str) -> int:
    try:
        return DAYS.index(name)
    except ValueError:
        raise ValueError(f"unknown day {name!r} (use {', '.join(DAYS)})") from None


def _days(spec: str) -> list[int]:
    """`mon-fri`, `sat-sun`, `fri-mon` (wraps past Sunday), `mon,wed,fri`, or one day."""
    days: list[int] = []
    for part in spec.split(","):
        first, dash, last = part.partition("-")
        start = _day(first)
        end = _day(last) if dash else start
        span = (end - start) % 7
        days += [(start + k) % 7 for k in range(span + 1)]
    return sorted(set(days))


def _minute(text: str) -> int:
    found = _TIME.match(text)
    if found is None:
        raise ValueError(f"time {text!r} is not HH:MM")
    hour, minute = int(found[1]), int(found[2])
    if minute > 59 or hour > 24 or (hour == 24 and minute):
        raise ValueError(f"time {text!r} is not between 00:00 and 24:00")
    return hour * 60 + minute


def _hours(spec: str) -> list[tuple[int, int]]:
    """Minute ranges within a day; `22:00-06:00` crosses midnight: 22:00-24:00 and 00:00-06:00
    of the same calendar day, since the band is tested on the call's own local day."""
    first, dash, last = spec.partition("-")
    if not dash:
        raise ValueError(f"time range {spec!r} is not HH:MM-HH:MM")
    start, end = _minute(first), _minute(last)
    if start == end:
        raise ValueError(f"time range {spec!r} is empty")
    if start < end:
        return [(start, end)]
    return [(start, DAY_MINUTES), (0, end)]


@lru_cache(maxsize=4096)
def parse(text: str | None) -> Band | None:
    """A band from its deck spelling; None for no band (`default` or empty).

    Forms: `DAYS`, `HH:MM-HH:MM` (every day) or `DAYS HH:MM-HH:MM`, where DAYS is a day, a
    range (`mon-fri`) or a comma list (`sat,sun`). Raises ValueError naming what is wrong.
    Cached: a 100,000-line deck has a handful of distinct bands.
    """
    words = (text or "").strip().lower().split()
    if not words or words == [DEFAULT]:
        return None
    if len(words) > 2:
        raise ValueError(f"time_band {text!r}: expected DAYS, HH:MM-HH:MM or both")
    try:
        if ":" in words[-1]:
            hours = _hours(words[-1])
            days = _days(words[0]) if len(words) == 2 else list(range(7))
        elif len(words) == 1:
            days, hours = _days(words[0]), [(0, DAY_MINUTES)]
        else:
            raise ValueError(f"time range {words[-1]!r} is not HH:MM-HH:MM")
    except ValueError as exc:
        raise ValueError(f"time_band {text!r}: {exc}") from None
    mask = 0
    for day in days:
        for start, end in hours:
            width = end - start
            mask |= ((1 << width) - 1) << (day * DAY_MINUTES + start)
    return Band(text=" ".join(words), mask=mask)
