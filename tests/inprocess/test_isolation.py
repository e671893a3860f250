"""Tenant isolation of every API-account read (contract §4: an account sees only its own
tenant), as a matrix: each read endpoint x each way of naming another tenant's things.

Two tenants, A and B, on the shared in-process pipeline. Each has its own extensions,
billing accounts, reseller clients, packages, routes and decks with names that carry a
marker of its own, and the same six stored calls (rated, unrated, inbound, one with a
recording) whose cdr ids, external ids and numbers are markers too. Both also share some
names (account `100000_VoIP`, package `pkg`, route `rt`, reseller client `SHAREDCLI`), so a
query by a shared name must still answer only the caller's rows.

Every case signs in with B's password and asks for something of A's: A's cdr ids, A's
account / client / package / route / numbers as parameters, a cursor or feed id taken from
A's rows, A's DatabaseID with B's password. It passes only if the answer is the one B is
owed (B's rows, counted exactly, or 401 / 404 where the thing is named) and no marker of A
appears anywhere in it (status line aside, the body and headers). The `own` case of each
endpoint, and the A-side control test, check that the markers do show where they belong,
so an answer that leaked would fail.
"""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from cdr_notifier.report_shapes import encode_cursor
from cdr_notifier.search_repository import Position
from cdrmodel.db import asyncpg_dsn
from tests.helpers import DECK_CSV, ROUTE_CSV, Tenant, wait_for
from tests.inprocess.conftest import ADMIN, Pipeline

DAY = datetime(2026, 3, 1, tzinfo=UTC)
SHARED_CLIENT = "SHAREDCLI"
SHARED_ACCOUNT = "100000_VoIP"  # extension 100's, in every test tenant
ATTACKER = "198.51.100.66"  # B's requests (and the wrong-password tries against A) come from here
OWNER = "198.51.100.10"  # A's control reads: never throttled by the tries above

# The stored calls, the same for both tenants (B's half an hour later): label -> what it is.
CALLS = ("r1", "r2", "r3", "r4", "r5", "r6")
UNRATED = ("r5", "r6")


@dataclass
class Side:
    """One tenant of the pair: its names, its stored calls, and the markers of both."""

    tag: str
    tenant: Tenant
    uid: str  # letters and hex: in every name of this tenant's own
    digits: str  # 8 digits: in every number of this tenant's own
    shift: timedelta  # its calls' start times after DAY's hours
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    feed_ids: dict[str, int] = field(default_factory=dict)

    @property
    def db(self) -> str:
        return self.tenant.database_id

    @property
    def login(self) -> str:
        return self.tenant.login

    @property
    def password(self) -> str:
        return self.tenant.password

    # Names of its own (a marker each).
    @property
    def ext1(self) -> str:
        return f"{self.digits}01"

    @property
    def ext2(self) -> str:
        return f"{self.digits}02"

    @property
    def account1(self) -> str:
        return f"acct1{self.uid}_VoIP"

    @property
    def account2(self) -> str:
        return f"acct2{self.uid}_VoIP"

    @property
    def client1(self) -> str:
        return f"cli{self.uid}"

    @property
    def package1(self) -> str:
        return f"pkg{self.uid}"

    @property
    def route1(self) -> str:
        return f"rt{self.uid}"

    @property
    def route_name(self) -> str:
        return f"Route {self.uid}"

    @property
    def dest_name(self) -> str:  # package1's deck line
        return f"Dest {self.uid}"

    @property
    def term_name(self) -> str:  # route1's deck line
        return f"Term {self.uid}"

    @property
    def shared_line(self) -> str:  # its own line in the shared-id package `pkg`
        return f"Shared {self.uid}"

    @property
    def shared_term(self) -> str:  # its own line in the shared-id route `rt`
        return f"SharedTerm {self.uid}"

    def number(self, n: int) -> str:
        return f"1{self.digits}{n:02d}"

    def external_ids(self, *labels: str) -> set[str]:
        return {self.rows[label]["external_id"] for label in labels}

    def cdr_id(self, label: str) -> str:
        return str(self.rows[label]["cdr_id"])

    @property
    def markers(self) -> list[str]:
        """Every string of this tenant's own that a read could carry."""
        names = [
            self.db,
            self.ext1,
            self.ext2,
            self.account1,
            self.account2,
            self.client1,
            self.package1,
            self.route1,
            self.route_name,
            self.dest_name,
            self.term_name,
            self.shared_line,
            self.shared_term,
            self.uid,
            self.digits,
        ]
        for row in self.rows.values():
            names += [str(row["cdr_id"]), row["external_id"]]
            numbers = (row["originating_number"], row["destination_number"])
            names += [n for n in numbers if self.digits in n]  # not the shared extension 100
            if row["recording_url"]:
                names.append(row["recording_url"])
        return names


@dataclass
class World:
    a: Side
    b: Side


Params = Callable[[World, Side], dict[str, Any]]
SideCheck = Callable[[httpx.Response, Side], None]
WorldCheck = Callable[[httpx.Response, World], None]


# --- setting the pair up -------------------------------------------------------------------


async def _configure(pipeline: Pipeline, side: Side) -> None:
    """Its own route, package, decks and extensions, and own lines in the shared decks."""
    base = f"/v1/admin/tenants/{side.db}"
    puts: list[tuple[str, dict[str, Any]]] = [
        (f"/routes/{side.route1}", {"name": side.route_name}),
        (f"/packages/{side.package1}", {"name": f"Package {side.uid}", "route": side.route1}),
        (
            f"/extensions/{side.ext1}",
            {"package": side.package1, "account": side.account1, "client": side.client1},
        ),
        (
            f"/extensions/{side.ext2}",
            {"package": side.package1, "account": side.account2, "client": SHARED_CLIENT},
        ),
    ]
    for path, body in puts:
        resp = await pipeline.rater.put(base + path, json=body, headers=ADMIN)
        assert resp.status_code == 200, resp.text
    decks = [
        (
            f"/packages/{side.package1}/rates",
            f"prefix,destination,rate\n1999,{side.dest_name},0.03\n",
        ),
        (
            f"/routes/{side.route1}/rates",
            f"prefix,destination,rate,increment\n1999,{side.term_name},0.004,6\n",
        ),
        ("/packages/pkg/rates", DECK_CSV + f"1888,{side.shared_line},0.02,60,60,0\n"),
        ("/routes/rt/rates", ROUTE_CSV + f"1888,{side.shared_term},0.01,6\n"),
    ]
    for path, text in decks:
        resp = await pipeline.rater.put(
            base + path, content=text, headers={**ADMIN, "content-type": "text/csv"}
        )
        assert resp.status_code == 200, resp.text


def _calls(side: Side) -> dict[str, dict[str, Any]]:
    """The six stored calls of a tenant, on DAY (shifted by side.shift)."""

    def at(hour: int) -> datetime:
        return DAY + timedelta(hours=hour) + side.shift

    def call(label: str, hour: int, **columns: Any) -> dict[str, Any]:
        row: dict[str, Any] = {
            "cdr_id": uuid.uuid4(),
            "database_id": side.db,
            "api_account": side.tenant.account,
            "external_id": f"x{side.uid}{label}",
            "originating_number": side.ext1,
            "destination_number": side.number(21),
            "start_time": at(hour),
            "duration": 60,
            "disposition": "ANSWERED",
            "received_at": at(hour) + timedelta(minutes=5),
            "rated": True,
            "unrated_reason": None,
            "direction": "outbound",
            "extension": side.ext1,
            "package_id": side.package1,
            "account": side.account1,
            "client": side.client1,
            "call_type": "I",
            "call_billing": "billed",
            "destination_name": side.dest_name,
            "matched_prefix": "1999",
            "billed_seconds": 60,
            "rate": Decimal("0.03"),
            "total": Decimal("0.03"),
            "cost": Decimal("0.004"),
            "currency": "USD",
            "recording_url": None,
            "extra": {},
        }
        row.update(columns)
        return row

    unrated: dict[str, Any] = {
        "rated": False,
        "call_type": None,
        "call_billing": None,
        "destination_name": None,
        "matched_prefix": None,
        "billed_seconds": 0,
        "rate": None,
        "total": None,
        "cost": None,
    }
    return {
        "r1": call("r1", 9, recording_url=f"https://rec.example.net/{side.uid}/r1.wav"),
        "r2": call(
            "r2",
            10,
            originating_number=side.ext2,
            destination_number=side.number(22),
            extension=side.ext2,
            account=side.account2,
            client=SHARED_CLIENT,
            duration=30,
            call_type="M",
        ),
        "r3": call(
            "r3",
            11,
            originating_number=side.number(11),
            destination_number=side.ext1,
            direction="inbound",
            duration=45,
            call_type="IB",
            call_billing="free",
            rate=Decimal(0),
            total=Decimal(0),
            cost=None,
        ),
        "r4": call(
            "r4",
            12,
            originating_number="100",
            destination_number=side.number(23),
            extension="100",
            package_id="pkg",
            account=SHARED_ACCOUNT,
            client=None,
            disposition="NO ANSWER",
            duration=0,
            billed_seconds=0,
            call_type="S",
            call_billing="free",
            total=Decimal(0),
        ),
        "r5": call(
            "r5",
            13,
            destination_number=side.number(24),
            duration=20,
            **{**unrated, "unrated_reason": "no_rate"},
        ),
        "r6": call(
            "r6",
            14,
            originating_number=side.number(12),
            destination_number=side.number(25),
            disposition="BUSY",
            duration=0,
            # as the rater writes it: its periodic pass over recent unrated calls may rewrite
            # this row (still no_package), and must not change what the reports count
            extension=None,
            package_id=None,
            account=None,
            client=None,
            **{**unrated, "unrated_reason": "no_package"},
        ),
    }


async def _store(pipeline: Pipeline, world: World) -> None:
    """Both tenants' calls in one statement, A's and B's alternating, so feed ids
    interleave; then each row's feed id."""
    ordered = [side.rows[label] for label in CALLS for side in (world.a, world.b)]
    columns = list(ordered[0])
    conn = await asyncpg.connect(asyncpg_dsn(pipeline.database_url))
    try:
        await conn.set_type_codec(
            "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
        marks = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
        await conn.executemany(
            f"INSERT INTO cdr ({', '.join(columns)}) VALUES ({marks})",
            [tuple(row[c] for c in columns) for row in ordered],
        )
        for side in (world.a, world.b):
            found = await conn.fetch(
                "SELECT external_id, feed_id FROM cdr WHERE database_id = $1", side.db
            )
            by_external = {r["external_id"]: r["feed_id"] for r in found}
            side.feed_ids = {label: by_external[side.rows[label]["external_id"]] for label in CALLS}
    finally:
        await conn.close()


def _side(tenant: Tenant, tag: str, first_digit: str, shift: timedelta) -> Side:
    digits = first_digit + "".join(random.choices("0123456789", k=7))
    return Side(tag, tenant, f"q{tag}{uuid.uuid4().hex[:8]}", digits, shift)


@pytest.fixture(scope="module")
async def world(pipeline: Pipeline) -> World:
    # Digits 4… and 6…: no epoch second of DAY (1772…) nor any other number shown holds them.
    a = _side(await pipeline.tenant(), "A", "4", timedelta(0))
    b = _side(await pipeline.tenant(), "B", "6", timedelta(minutes=30))
    pair = World(a, b)
    for side in (a, b):
        await _configure(pipeline, side)
        side.rows = _calls(side)
    for side in (a, b):
        await pipeline.settled(side.tenant)
    await _store(pipeline, pair)
    for side in (a, b):  # the feed shows a commit once older transactions have ended

        async def fed(side: Side = side) -> bool:
            resp = await pipeline.notifier.get("/billing/feed", auth=(side.login, side.password))
            shown = {r["external_id"] for r in resp.json()["cdr"]}
            return side.external_ids(*CALLS) <= shown

        await wait_for(fed, timeout=30, what=f"{side.db}'s calls in the feed")
    return pair


def _client(pipeline: Pipeline, address: str) -> httpx.AsyncClient:
    app = pipeline.notifier._transport.app  # type: ignore[attr-defined]
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(address, 40000)),
        base_url="http://notifier.inprocess",
        timeout=30,
    )


@pytest.fixture(scope="module")
async def attacker(pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(pipeline, ATTACKER) as client:
        yield client


@pytest.fixture(scope="module")
async def owner(pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(pipeline, OWNER) as client:
        yield client


# --- reading answers -----------------------------------------------------------------------


def _csv(resp: httpx.Response) -> list[dict[str, str]]:
    assert resp.headers["content-type"].startswith("text/csv"), resp.headers
    return list(csv.DictReader(io.StringIO(resp.text)))


def _json(resp: httpx.Response) -> Any:
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    return resp.json()


def _records(resp: httpx.Response, key: str) -> list[dict[str, Any]]:
    """The records of a JSON answer (`key`) or the rows of a CSV one."""
    if resp.headers["content-type"].startswith("text/csv"):
        return _csv(resp)
    records: list[dict[str, Any]] = _json(resp)[key]
    return records


def _check_records(key: str, *labels: str) -> Callable[[httpx.Response, Side], None]:
    """Exactly `side`'s calls `labels`, and only its tenant's."""

    def check(resp: httpx.Response, side: Side) -> None:
        records = _records(resp, key)
        assert sorted(r["external_id"] for r in records) == sorted(side.external_ids(*labels))
        assert {r["database_id"] for r in records} <= {side.db}

    return check


def _check_compat_cdr(*labels: str) -> Callable[[httpx.Response, Side], None]:
    def check(resp: httpx.Response, side: Side) -> None:
        body = _json(resp)
        assert body["status"] == "success", body
        assert sorted(c["uniqueid"] for c in body["cdr"]) == sorted(side.external_ids(*labels))

    return check


def _check_accounts(*names: Callable[[Side], str]) -> Callable[[httpx.Response, Side], None]:
    def check(resp: httpx.Response, side: Side) -> None:
        values = [a["value"] for a in _json(resp)["accounts"]]
        assert values == ["all", *sorted(name(side) for name in names)]

    return check


def _check_numbers(*numbers: Callable[[Side], str]) -> Callable[[httpx.Response, Side], None]:
    """getCallTypes: the extension options (the values that are numbers) are exactly these."""

    def check(resp: httpx.Response, side: Side) -> None:
        values = [t["value"] for t in _json(resp)["call_types"]]
        assert values[:3] == ["all", "outgoing", "incoming"]
        assert [v for v in values if v.isdigit()] == sorted(n(side) for n in numbers)

    return check


def _check_billing(resp: httpx.Response, side: Side) -> None:
    assert [o["value"] for o in _json(resp)["call_billing"]] == ["all", "free", "billed"]


def _check_rates(line: Callable[[Side], str]) -> Callable[[httpx.Response, Side], None]:
    def check(resp: httpx.Response, side: Side) -> None:
        assert [r["destination"] for r in _json(resp)["rates"]] == [line(side)]

    return check


def _check_termination(
    route: Callable[[Side], str], name: Callable[[Side], str], line: Callable[[Side], str]
) -> Callable[[httpx.Response, Side], None]:
    def check(resp: httpx.Response, side: Side) -> None:
        body = _json(resp)
        assert body["route"] == {"value": route(side), "description": name(side)}
        assert [r["destination"] for r in body["rates"]] == [line(side)]

    return check


def _calls_of(side: Side, **match: Any) -> list[dict[str, Any]]:
    return [r for r in side.rows.values() if all(r[k] == v for k, v in match.items())]


def _check_unrated(*labels: str) -> Callable[[httpx.Response, Side], None]:
    def check(resp: httpx.Response, side: Side) -> None:
        records = _records(resp, "records")
        assert sorted(r["external_id"] for r in records) == sorted(side.external_ids(*labels))
        if not resp.headers["content-type"].startswith("text/csv"):
            body = resp.json()
            assert body["records_total"] == len(UNRATED)
            assert sorted((r["reason"], r["records"]) for r in body["reasons"]) == [
                ("no_package", 1),
                ("no_rate", 1),
            ]

    return check


def _extension_cell(value: str | None) -> str | None:
    return value or None  # CSV shows null as an empty cell


def _check_agents(resp: httpx.Response, side: Side) -> None:
    extensions = {r["extension"] for r in side.rows.values()}
    if resp.headers["content-type"].startswith("text/csv"):
        rows = _csv(resp)
        assert {_extension_cell(r["extension"]) for r in rows} == extensions
        incoming = sum(int(r["incoming_calls"]) for r in rows)
        outgoing = sum(int(r["outgoing_calls"]) for r in rows)
    else:
        body = resp.json()
        assert {r["extension"] for r in body["agents"]} == extensions
        incoming, outgoing = body["totals"]["incoming_calls"], body["totals"]["outgoing_calls"]
    assert incoming == len(_calls_of(side, direction="inbound"))
    assert outgoing == len(_calls_of(side, direction="outbound"))


def _check_ratio(resp: httpx.Response, side: Side) -> None:
    extensions = {r["extension"] for r in side.rows.values()}
    if resp.headers["content-type"].startswith("text/csv"):
        rows = _csv(resp)
        keys = {_extension_cell(r["extension"]) for r in rows}
        calls = sum(int(r["calls"]) for r in rows)
        answered = sum(int(r["answered"]) for r in rows)
    else:
        body = resp.json()
        keys = {r["extension"] for r in body["rows"]}
        calls, answered = body["totals"]["calls"], body["totals"]["answered"]
    assert keys == extensions
    assert calls == len(CALLS)
    assert answered == len(_calls_of(side, disposition="ANSWERED"))


def _check_peaks(resp: httpx.Response, side: Side) -> None:
    hours = _csv(resp) if resp.headers["content-type"].startswith("text/csv") else None
    if hours is None:
        hours = resp.json()["hours"]
    by_hour = {int(h["hour"]): int(h["calls"]) for h in hours if int(h["calls"])}
    assert by_hour == {r["start_time"].hour: 1 for r in side.rows.values()}
    answered = sum(int(h["answered"]) for h in hours)
    assert answered == len(_calls_of(side, disposition="ANSWERED"))


def _check_recording(resp: httpx.Response, side: Side) -> None:
    url = side.rows["r1"]["recording_url"]
    assert resp.headers["location"] == url
    assert resp.json() == {"cdr_id": side.cdr_id("r1"), "record": url}


def _check_not_found_cdr(label: str, *, upper: bool = False) -> WorldCheck:
    """Another tenant's cdr id answers exactly what an unknown one does."""

    def check(resp: httpx.Response, world: World) -> None:
        cdr_id = world.a.cdr_id(label).upper() if upper else world.a.cdr_id(label)
        assert resp.json() == {"message": f"no CDR {cdr_id!r} in tenant {world.b.db}"}
        assert "location" not in resp.headers

    return check


def _check_feed_from(label: str) -> Callable[[httpx.Response, World], None]:
    """B's calls with a feed id at or above A's `label` call's, and only those."""

    def check(resp: httpx.Response, world: World) -> None:
        start = world.a.feed_ids[label]
        wanted = [x for x in CALLS if world.b.feed_ids[x] >= start]
        assert 0 < len(wanted) < len(CALLS)  # the interleaving makes this a real cut
        _check_records("cdr", *wanted)(resp, world.b)

    return check


# --- the matrix ----------------------------------------------------------------------------


def _b(check: SideCheck) -> WorldCheck:
    """A check of B's own view, as a check of the world."""
    return lambda resp, world: check(resp, world.b)


def _none(key: str) -> WorldCheck:
    def check(resp: httpx.Response, world: World) -> None:
        assert _records(resp, key) == []

    return check


def _compat_error(message: Callable[[World], str]) -> WorldCheck:
    def check(resp: httpx.Response, world: World) -> None:
        assert resp.json() == {"status": "error", "message": message(world)}

    return check


@dataclass(frozen=True)
class Attack:
    """B's request naming A's things: extra parameters (or another path), and the answer."""

    name: str
    params: Callable[[World], dict[str, Any]] = lambda world: {}
    path: Callable[[World], str] | None = None
    status: int | None = None  # None: the endpoint's success status
    check: WorldCheck | None = None  # None: B's own view (the endpoint's check on B)


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: Callable[[World, Side], str]
    check: SideCheck
    params: Params = lambda world, side: {}
    method: str = "GET"
    ok: int = 200
    attacks: tuple[Attack, ...] = ()


def _at(path: str) -> Callable[[World, Side], str]:
    return lambda world, side: path


RANGE = {"from": "2026-03-01", "to": "2026-03-01"}
COMPAT_DAY = {"date_from": "2026-03-01", "date_to": "2026-03-01", "timezone": "0"}


def _feed(fmt: str) -> Endpoint:
    return Endpoint(
        f"feed.{fmt}",
        _at("/billing/feed"),
        _check_records("cdr", *CALLS),
        params=lambda world, side: {"format": fmt},
        attacks=(
            Attack(
                "fromid=A_feed_id",
                lambda world: {"fromid": str(world.a.feed_ids["r3"])},
                check=_check_feed_from("r3"),
            ),
        ),
    )


def _search(fmt: str) -> Endpoint:
    key = "cdrs"
    return Endpoint(
        f"v1_cdrs.{fmt}",
        _at("/v1/cdrs"),
        _check_records(key, *CALLS),
        params=lambda world, side: {"format": fmt},
        attacks=(
            Attack(
                "billing_group=A_package",
                lambda w: {"billing_group": w.a.package1},
                check=_none(key),
            ),
            Attack(
                "billing_group=shared_package",
                lambda w: {"billing_group": "pkg"},
                check=_b(_check_records(key, "r4")),
            ),
            Attack(
                "billing_group=A_and_B_packages",
                lambda w: {"billing_group": [w.a.package1, w.b.package1]},
                check=_b(_check_records(key, "r1", "r2", "r3", "r5")),
            ),
            Attack("caller=A_extension", lambda w: {"caller": w.a.ext1}, check=_none(key)),
            Attack("caller=A_number", lambda w: {"caller": w.a.number(11)}, check=_none(key)),
            Attack(
                "destination=A_number", lambda w: {"destination": w.a.number(21)}, check=_none(key)
            ),
            Attack(
                "destination=A_extension", lambda w: {"destination": w.a.ext1}, check=_none(key)
            ),
            Attack(
                "cursor=A_call",
                lambda w: {
                    "cursor": Position(
                        w.a.rows["r3"]["start_time"], w.a.rows["r3"]["cdr_id"]
                    ).encode()
                },
                check=_b(_check_records(key, "r3", "r4", "r5", "r6")),
            ),
        ),
    )


def _compat(
    action: str, method: str, check: SideCheck, params: Params, *attacks: Attack
) -> Endpoint:
    return Endpoint(
        f"api_cdr.{action}.{method}",
        _at("/api/cdr"),
        check,
        params=lambda world, side: {"action": action, **params(world, side)},
        method=method,
        attacks=attacks,
    )


def _compat_endpoints(method: str) -> list[Endpoint]:
    day: Params = lambda world, side: dict(COMPAT_DAY)  # noqa: E731
    return [
        _compat(
            "getCallAccounts",
            method,
            _check_accounts(lambda s: SHARED_ACCOUNT, lambda s: s.account1, lambda s: s.account2),
            lambda world, side: {},
            Attack(
                "client=A_client",
                lambda w: {"client": w.a.client1},
                check=_b(_check_accounts()),
            ),
            Attack(
                "client=shared_client",
                lambda w: {"client": SHARED_CLIENT},
                check=_b(_check_accounts(lambda s: s.account2)),
            ),
        ),
        _compat("getCallBilling", method, _check_billing, lambda world, side: {}),
        _compat(
            "getCallTypes",
            method,
            _check_numbers(lambda s: "100", lambda s: s.ext1, lambda s: s.ext2),
            lambda world, side: {},
            Attack(
                "client=A_client", lambda w: {"client": w.a.client1}, check=_b(_check_numbers())
            ),
            Attack(
                "client=shared_client",
                lambda w: {"client": SHARED_CLIENT},
                check=_b(_check_numbers(lambda s: s.ext2)),
            ),
        ),
        _compat(
            "getCDR",
            method,
            _check_compat_cdr(*CALLS),
            day,
            Attack(
                "account=A_account",
                lambda w: {"account": w.a.account1},
                check=_b(_check_compat_cdr()),
            ),
            Attack(
                "account=shared_account",
                lambda w: {"account": SHARED_ACCOUNT},
                check=_b(_check_compat_cdr("r4")),
            ),
            Attack(
                "calltype=A_extension",
                lambda w: {"calltype": w.a.ext1},
                check=_b(_check_compat_cdr()),
            ),
            Attack(
                "calltype=A_extension_with_plus",
                lambda w: {"calltype": "+" + w.a.ext1},
                check=_b(_check_compat_cdr()),
            ),
        ),
        _compat(
            "getRates",
            method,
            _check_rates(lambda s: s.dest_name),
            lambda world, side: {"package": side.package1, "query": "Dest"},
            Attack(
                "package=A_package",
                lambda w: {"package": w.a.package1, "query": "Dest"},
                status=404,
                check=_compat_error(lambda w: f"package: no package {w.a.package1!r}"),
            ),
            Attack(
                "package=shared_package",
                lambda w: {"package": "pkg", "query": "Shared"},
                check=_b(_check_rates(lambda s: s.shared_line)),
            ),
            Attack(
                "package=A_package_prefix_query",
                lambda w: {"package": w.a.package1, "query": "1999"},
                status=404,
                check=_compat_error(lambda w: f"package: no package {w.a.package1!r}"),
            ),
        ),
        _compat(
            "getTerminationRates",
            method,
            _check_termination(lambda s: s.route1, lambda s: s.route_name, lambda s: s.term_name),
            lambda world, side: {"route": side.route1, "query": "Term"},
            Attack(
                "route=A_route",
                lambda w: {"route": w.a.route1, "query": "Term"},
                status=404,
                check=_compat_error(lambda w: f"route: no route {w.a.route1!r}"),
            ),
            Attack(
                "route=shared_route",
                lambda w: {"route": "rt", "query": "SharedTerm"},
                check=_b(
                    _check_termination(lambda s: "rt", lambda s: "route", lambda s: s.shared_term)
                ),
            ),
        ),
        _compat(
            "getResellerCDR",
            method,
            _check_compat_cdr("r1", "r3", "r5"),
            lambda world, side: {**COMPAT_DAY, "client": side.client1},
            Attack(
                "client=A_client",
                lambda w: {**COMPAT_DAY, "client": w.a.client1},
                check=_b(_check_compat_cdr()),
            ),
            Attack(
                "client=shared_client",
                lambda w: {**COMPAT_DAY, "client": SHARED_CLIENT},
                check=_b(_check_compat_cdr("r2")),
            ),
            Attack(
                "client=A_client_account=A_account",
                lambda w: {**COMPAT_DAY, "client": w.a.client1, "account": w.a.account1},
                check=_b(_check_compat_cdr()),
            ),
        ),
    ]


def _report(name: str, fmt: str, check: SideCheck, *attacks: Attack, **more: str) -> Endpoint:
    return Endpoint(
        f"reports.{name}.{fmt}",
        _at(f"/v1/reports/{name}"),
        check,
        params=lambda world, side: {**RANGE, "format": fmt, **more},
        attacks=attacks,
    )


def _unrated_cursor(world: World) -> dict[str, str]:
    row = world.a.rows["r5"]
    return {"cursor": encode_cursor(row["start_time"], row["cdr_id"])}


def _report_endpoints(fmt: str) -> list[Endpoint]:
    return [
        _report(
            "unrated",
            fmt,
            _check_unrated(*UNRATED),
            # B's r5 is half an hour after A's: the position passes none of B's records.
            Attack("cursor=A_record", _unrated_cursor),
            Attack(
                "cursor=A_record_reason",
                lambda w: {**_unrated_cursor(w), "reason": "no_package"},
                check=_b(_check_unrated_only("r6")),
            ),
        ),
        _report("agents", fmt, _check_agents),
        _report("answer-ratio", fmt, _check_ratio, by="extension"),
        _report("peak-hours", fmt, _check_peaks),
    ]


def _check_unrated_only(*labels: str) -> SideCheck:
    def check(resp: httpx.Response, side: Side) -> None:
        records = _records(resp, "records")
        assert sorted(r["external_id"] for r in records) == sorted(side.external_ids(*labels))

    return check


RECORDING = Endpoint(
    "recording",
    lambda world, side: f"/v1/cdrs/{side.cdr_id('r1')}/recording",
    _check_recording,
    ok=302,
    attacks=(
        Attack(
            "A_cdr_with_recording",
            path=lambda w: f"/v1/cdrs/{w.a.cdr_id('r1')}/recording",
            status=404,
            check=_check_not_found_cdr("r1"),
        ),
        Attack(
            "A_cdr_without_recording",
            path=lambda w: f"/v1/cdrs/{w.a.cdr_id('r2')}/recording",
            status=404,
            check=_check_not_found_cdr("r2"),
        ),
        Attack(
            "A_cdr_id_upper_case",
            path=lambda w: f"/v1/cdrs/{w.a.cdr_id('r1').upper()}/recording",
            status=404,
            check=_check_not_found_cdr("r1", upper=True),
        ),
    ),
)

ENDPOINTS = [
    _feed("json"),
    _feed("csv"),
    _search("json"),
    _search("csv"),
    RECORDING,
    *_compat_endpoints("GET"),
    *_compat_endpoints("POST"),
    *_report_endpoints("json"),
    *_report_endpoints("csv"),
]

# How B signs in, for every endpoint. `own` and `basic_B_over_A_login` answer B's own view.
B_BASIC = "basic"
A_DB_B_PASSWORD_BASIC = "A_db_B_password_basic"
A_DB_B_PASSWORD_LOGIN = "A_db_B_password_login"
B_BASIC_OVER_A_LOGIN = "B_basic_over_A_login"
SIGN_INS = (B_BASIC, A_DB_B_PASSWORD_BASIC, A_DB_B_PASSWORD_LOGIN, B_BASIC_OVER_A_LOGIN)


@dataclass(frozen=True)
class Case:
    endpoint: Endpoint
    sign_in: str
    attack: Attack


def _cases() -> list[Any]:
    cases = []
    for endpoint in ENDPOINTS:
        for sign_in in SIGN_INS:
            failing = sign_in in (A_DB_B_PASSWORD_BASIC, A_DB_B_PASSWORD_LOGIN)
            own = Attack("own" if sign_in == B_BASIC else sign_in, status=401 if failing else None)
            cases.append(
                pytest.param(Case(endpoint, sign_in, own), id=f"{endpoint.name}-{own.name}")
            )
        for attack in endpoint.attacks:
            cases.append(
                pytest.param(Case(endpoint, B_BASIC, attack), id=f"{endpoint.name}-{attack.name}")
            )
    return cases


async def _send(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    world: World,
    side: Side,
    *,
    sign_in: str = B_BASIC,
    attack: Attack | None = None,
) -> httpx.Response:
    """`endpoint`'s request as `side` (B in every attack), signed in as `sign_in` says."""
    params = endpoint.params(world, side)
    path = endpoint.path(world, side)
    if attack is not None:
        params = {**params, **attack.params(world)}
        if attack.path is not None:
            path = attack.path(world)
    auth: tuple[str, str] | None = (side.login, side.password)
    if sign_in == A_DB_B_PASSWORD_BASIC:
        auth = (world.a.login, side.password)
    elif sign_in in (A_DB_B_PASSWORD_LOGIN, B_BASIC_OVER_A_LOGIN):
        params = {**params, "login": world.a.login, "password": side.password}
        if sign_in == A_DB_B_PASSWORD_LOGIN:
            auth = None
    if endpoint.method == "POST":  # the action in the query string, the rest in the form
        action = {"action": params.pop("action")}
        return await client.post(path, params=action, data=params, auth=auth)
    return await client.get(path, params=params, auth=auth)


def _sent(resp: httpx.Response) -> str:
    request = resp.request
    return str(request.url) + request.content.decode() + request.headers.get("authorization", "")


def _assert_nothing_of(side: Side, resp: httpx.Response) -> None:
    """No marker of `side` in the answer's body or headers, except what the request itself
    carried (a 404 may name the id it was asked for)."""
    sent = _sent(resp)
    answer = resp.text + "\n" + "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
    leaked = [m for m in side.markers if m not in sent and m in answer]
    assert not leaked, f"{leaked} of {side.db} in the answer to {resp.request.url}: {answer}"


def _assert_refused(resp: httpx.Response, endpoint: Endpoint) -> None:
    assert resp.status_code == 401, resp.text
    if endpoint.name.startswith("api_cdr."):
        assert resp.json() == {"status": "error", "message": "password: APIPassword wrong"}
    else:
        assert resp.json() == {"code": 50390, "message": "APIPassword wrong"}


@pytest.mark.parametrize("case", _cases())
async def test_b_never_sees_anything_of_a(
    attacker: httpx.AsyncClient, world: World, case: Case
) -> None:
    endpoint, attack = case.endpoint, case.attack
    resp = await _send(attacker, endpoint, world, world.b, sign_in=case.sign_in, attack=attack)
    status = attack.status or endpoint.ok
    assert resp.status_code == status, resp.text
    _assert_nothing_of(world.a, resp)
    if status == 401:
        _assert_refused(resp, endpoint)
    elif attack.check is not None:
        attack.check(resp, world)
    else:
        assert status == endpoint.ok
        endpoint.check(resp, world.b)


# Answers that name nothing of a tenant's: their checks compare counts (or constants).
COUNTS_ONLY = {
    "api_cdr.getCallBilling.GET",
    "api_cdr.getCallBilling.POST",
    "reports.peak-hours.json",
    "reports.peak-hours.csv",
}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.name for e in ENDPOINTS])
async def test_a_sees_its_own_markers_and_none_of_b(
    owner: httpx.AsyncClient, world: World, endpoint: Endpoint
) -> None:
    """The control: the same reads as A show A's data, markers and all (so their absence
    above means something), and nothing of B's."""
    resp = await _send(owner, endpoint, world, world.a)
    assert resp.status_code == endpoint.ok, resp.text
    endpoint.check(resp, world.a)
    _assert_nothing_of(world.b, resp)
    if endpoint.name not in COUNTS_ONLY:
        sent = _sent(resp)
        shown = [m for m in world.a.markers if m not in sent and m in resp.text]
        assert shown, f"no marker of A in {resp.text}"
