"""Deck parsing without I/O: what a line becomes, the COPY payload PostgreSQL reads, refusals
that survive the trip back from the worker process, and the worker replaced when it dies."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import pickle
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import psutil
import pytest

from cdr_rater.admin import parse_pool
from cdr_rater.admin.decks import (
    COPY_COLUMNS,
    MAX_LISTED_ERRORS,
    BadDeck,
    DeckLine,
    copy_csv,
    parse_deck,
    prepare_deck,
)
from tests.helpers import wait_for

PARIS = ZoneInfo("Europe/Paris")


def test_a_csv_line_becomes_exact_columns_with_defaults() -> None:
    body = b"\xef\xbb\xbfPrefix, Rate ,destination,effective_from\n+33,0.0123,France,2026-06-01\n\n"
    (line,) = parse_deck(body, "text/csv", PARIS)
    assert line == DeckLine(
        prefix="33",
        destination="France",
        rate=Decimal("0.0123"),
        increment=60,
        initial_increment=None,
        connect_fee=Decimal(0),
        effective_from=datetime(2026, 6, 1, tzinfo=PARIS),
        effective_to=None,
        direction="outbound",
        time_band=None,
    )
    assert line.effective_from is not None
    assert line.effective_from.astimezone(UTC) == datetime(2026, 5, 31, 22, tzinfo=UTC)


def test_json_items_take_numbers_and_nulls() -> None:
    body = b'[{"prefix": 44, "rate": 1E-8, "increment": 6, "initial_increment": 0,'
    body += b' "direction": "INBOUND", "time_band": null, "effective_to": "2030-01-01T00:00Z"}]'
    (line,) = parse_deck(body, "application/json", UTC)
    assert (line.prefix, line.rate, line.increment, line.initial_increment) == (
        "44",
        Decimal("1E-8"),
        6,
        0,
    )
    assert line.direction == "inbound" and line.time_band is None
    assert line.effective_to == datetime(2030, 1, 1, tzinfo=UTC)


def test_refusals_count_every_bad_line_and_list_the_first_hundred() -> None:
    rows = "\n".join(["prefix,rate"] + ["x,1"] * 150 + ["1,1"])
    with pytest.raises(BadDeck) as caught:
        parse_deck(rows.encode(), "text/csv", UTC)
    detail = caught.value.detail
    assert detail is not None and detail["bad"] == 150
    assert detail["listed"] == len(detail["errors"]) == MAX_LISTED_ERRORS
    assert detail["errors"][0] == {
        "line": 2,
        "reason": "prefix 'x' must be digits only (a leading + is allowed)",
    }
    # A refusal raised in the worker process comes back whole.
    again = pickle.loads(pickle.dumps(caught.value))
    assert (again.message, again.detail) == (caught.value.message, detail)


def test_the_copy_payload_reads_back_as_the_lines() -> None:
    lines = parse_deck(
        b"prefix,rate,destination,connect_fee,effective_from,effective_to,time_band\n"
        b'1,0.00000001,"Comma, ""quoted""",0.5,2026-01-01T00:00Z,2027-01-01T00:00Z,sat-sun\n'
        b"2,100,,,,,\n",
        "text/csv",
        UTC,
    )
    payload = copy_csv(lines, ("DB", "package", "p1"))
    rows = list(csv.reader(io.StringIO(payload.decode())))
    assert rows == [
        ["DB", "package", "p1", "1", 'Comma, "quoted"', "0.00000001", "60", "", "0.5",
         "2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00", "outbound", "sat-sun"],
        ["DB", "package", "p1", "2", "", "100", "60", "", "0", "", "", "outbound", ""],
    ]  # fmt: skip
    assert len(COPY_COLUMNS) == len(rows[0])
    assert prepare_deck(b"prefix,rate\n1,2\n", "text/csv", "UTC", ("D", "route", "r")) == (
        1,
        b"D,route,r,1,,2,60,,0,,,outbound,\n",
    )


def _die_once(marker: str) -> int:
    """Kills the worker process the first time (as the kernel's OOM killer would)."""
    if not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    return os.getpid()


async def test_a_dead_worker_is_replaced(tmp_path: Path) -> None:
    first = await parse_pool.run(os.getpid)
    assert first != os.getpid()  # another process
    survivor = await parse_pool.run(_die_once, str(tmp_path / "died"))
    assert survivor not in (first, os.getpid())
    assert await parse_pool.run(os.getpid) == survivor  # and kept


_HOLDER = """
import asyncio, os, sys, time
from cdr_rater.admin import parse_pool
print(asyncio.run(parse_pool.run(os.getpid)), flush=True)
time.sleep(60)
"""


async def test_the_worker_dies_with_a_rater_killed_hard() -> None:
    rater = subprocess.Popen([sys.executable, "-c", _HOLDER], stdout=subprocess.PIPE, text=True)
    try:
        assert rater.stdout is not None
        worker = int(await asyncio.to_thread(rater.stdout.readline))
        assert psutil.pid_exists(worker)
    finally:
        rater.kill()  # kill -9: no atexit, no executor shutdown
        rater.wait()
        assert rater.stdout is not None
        rater.stdout.close()  # not read to its end: a surviving worker holds it open

    def gone() -> bool:
        return not psutil.pid_exists(worker) or psutil.Process(worker).status() == "zombie"

    try:
        await wait_for(gone, timeout=10, what=f"worker {worker} to exit")
    finally:
        if not gone():  # failed: leave no orphan behind
            psutil.Process(worker).kill()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"prefix,rate\n1-4,1\n", "line 2: prefix '1-4' must be digits only"),
        (b"prefix,rate\n" + b"1" * 21 + b",1\n", "line 2: prefix must have at most 20 digits"),
        (b"prefix,rate\n+,1\n", "line 2: prefix missing"),
        (b"prefix,rate\n1,\n", "line 2: rate missing"),
        (b"prefix,rate\n1,x\n", "line 2: rate 'x' is not a decimal number"),
        (b"prefix,rate\n1,-1\n", "line 2: rate must be a non-negative number"),
        (b"prefix,rate\n1,1E+12\n", "line 2: rate must be below 10^12"),
        (b"prefix,rate,increment\n1,1,0\n", "line 2: increment must be a whole number"),
        (b"prefix,rate,colour\n1,1,red\n", "line 2: unknown column 'colour'"),
        (b"prefix,rate,direction\n1,1,up\n", "line 2: direction 'up' must be outbound"),
        (b"prefix,rate,effective_from\n1,1,soon\n", "line 2: effective_from 'soon' is not"),
        (b"prefix,rate,effective_to\n1,1,0999-01-01\n", "line 2: effective_to must be between"),
        (b"prefix,rate,effective_from,effective_to\n1,1,2026-02-01,2026-01-01\n", "line 2: effe"),
        (b"prefix,rate\n1,1,1\n", "line 2: more fields than the header"),
        (b"prefix,rate\n1,1\n1,2\n", "line 3: same prefix, direction, effective_from"),
        (b"prefix,rate,destination\n1,1,a\x01b\n", "line 2: destination must not contain"),
        (b"prefix,rate,time_band\n1,1," + b"x" * 201 + b"\n", "line 2: time_band is longer"),
        (b"prefix,rate,time_band\n1,1,mon-fri 8-18\n", "line 2: time_band 'mon-fri 8-18'"),
        (b"rate\n1\n", "line 1: CSV header must name at least prefix and rate"),
        (b"prefix,rate\n\xff,1\n", "CSV deck must be UTF-8"),
        (b"\r0", "line 1: not readable as CSV"),
        (b"[1]", "a JSON deck is a list of objects"),
        (b"[{]", "body is not valid JSON"),
        (b'[{"prefix": "1", "rate": {}}]', "item 1: rate must be text or a number"),
        (b'[{"prefix": "1", "rate": false}]', "item 1: rate must be text or a number"),
    ],
)
def test_each_refusal_names_the_line_and_its_reason(body: bytes, reason: str) -> None:
    with pytest.raises(BadDeck) as caught:
        parse_deck(body, "", UTC)
    assert caught.value.message.startswith(reason), caught.value.message
