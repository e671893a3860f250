"""PBX-like clients of the compat endpoint for the subprocess tests, and the ledger that checks
what they were told against what the rater stored (each record by its ExternalID)."""

from __future__ import annotations

import asyncio
import base64
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field

import aiohttp
import asyncpg

from tests.helpers import Tenant

SUBMIT = "/api_submitcdr.aspx"
NO_ANSWER = "no answer"  # connection refused or reset, or no answer in time
SETTLED = ("0", "50421")
RETRYABLE = (NO_ANSWER, "50503")


async def ask(
    session: aiohttp.ClientSession, url: str, params: dict[str, str], *, timeout: float = 5
) -> str:
    """One compat submission: the code answered (always HTTP 200 text/plain), or NO_ANSWER."""
    try:
        async with session.get(
            f"{url}{SUBMIT}", params=params, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            body = await resp.text()
            assert resp.status == 200, f"HTTP {resp.status}: {body[:200]}"
            return body
    except (aiohttp.ClientError, TimeoutError):
        return NO_ANSWER


@dataclass
class Ledger:
    """Every answer each record (ExternalID) got, in order."""

    tenant: Tenant
    answers: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    async def submit(
        self, session: aiohttp.ClientSession, url: str, external_id: str, *, timeout: float = 5
    ) -> str:
        # The same record every time it is sent: its fields follow from its ExternalID.
        duration = 30 + zlib.crc32(external_id.encode()) % 200
        params = self.tenant.submit_params(ExternalID=external_id, Duration=str(duration))
        code = await ask(session, url, params, timeout=timeout)
        self.answers[external_id].append(code)
        return code

    async def submit_until_settled(
        self,
        session: aiohttp.ClientSession,
        url: str,
        external_id: str,
        *,
        deadline: float,
        pause: float = 0.05,
    ) -> str:
        """What a careful PBX does: resend the same record on no answer or 50503 until it is
        answered 0 or 50421 (`deadline` is a time.monotonic() instant)."""
        while True:
            code = await self.submit(session, url, external_id)
            if code in SETTLED:
                return code
            assert code in RETRYABLE, f"{external_id} answered {code}"
            assert time.monotonic() < deadline, f"{external_id} still unsettled: {code}"
            await asyncio.sleep(pause)  # the client's back-off between resends

    async def submit_batch(
        self, session: aiohttp.ClientSession, url: str, external_ids: list[str]
    ) -> tuple[int, dict[str, str]]:
        """The records as one native `POST /v1/cdrs` batch: the HTTP status and headers; each
        record's code goes in the ledger (a 503 answers every record 50503)."""
        body = [
            {
                "originating_number": self.tenant.submit_params()["OriginatingNumber"],
                "destination_number": self.tenant.submit_params()["DestinationNumber"],
                "duration": 30 + zlib.crc32(x.encode()) % 200,
                "external_id": x,
            }
            for x in external_ids
        ]
        secret = base64.b64encode(f"{self.tenant.login}:{self.tenant.password}".encode())
        auth = {"authorization": f"Basic {secret.decode()}"}
        async with session.post(f"{url}/v1/cdrs", json=body, headers=auth) as resp:
            answer = await resp.json()
            if resp.status == 200:
                codes = [str(r["code"]) for r in answer["results"]]
            else:
                codes = [str(answer["code"])] * len(external_ids)
            for external_id, code in zip(external_ids, codes, strict=True):
                self.answers[external_id].append(code)
            return resp.status, dict(resp.headers)

    def told(self, code: str) -> set[str]:
        """Records answered `code` at least once."""
        return {x for x, codes in self.answers.items() if code in codes}

    def check_stored(self, stored: dict[str, int], *, maybe: set[str] | None = None) -> None:
        """Each record answered 0 is stored exactly once; 50421 only for a stored record;
        none is stored twice; a record never answered 0 or 50421 is not stored, unless it is
        one of `maybe` (told 50503 for a produce whose fate the broker never said)."""
        twice = {x: n for x, n in stored.items() if n != 1}
        assert not twice, f"stored more than once: {twice}"
        accepted = self.told("0")
        lost = accepted - stored.keys()
        assert not lost, f"answered 0 but not stored: {sorted(lost)[:20]}"
        phantom = self.told("50421") - stored.keys()
        assert not phantom, f"answered 50421 but never stored: {sorted(phantom)[:20]}"
        unexplained = stored.keys() - accepted - self.told("50421") - (maybe or set())
        assert not unexplained, f"stored but never answered 0 or 50421: {sorted(unexplained)[:20]}"
        acks = {x: codes.count("0") for x, codes in self.answers.items() if codes.count("0") > 1}
        assert not acks, f"answered 0 more than once: {acks}"


async def stored_by_external_id(conn: asyncpg.Connection, database_id: str) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT external_id, count(*) AS n FROM cdr WHERE database_id = $1 GROUP BY external_id",
        database_id,
    )
    return {r["external_id"]: r["n"] for r in rows}
