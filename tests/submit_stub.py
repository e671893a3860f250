"""A stand-in ingest on loopback for `cdrflow submit` tests: the wire behaviour of contract §2
(Basic auth, per-record codes, 50421 for what it has, 503 with Retry-After, per-record 50503)
in a real HTTP server on its own thread, so the CLI under test can block the main thread."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

from cdrflow_dev.infra import free_port


def summary_counts(output: str) -> dict[str, int]:
    """code -> records, from the rows of the table `cdrflow submit` ends with."""
    rows = re.findall(r"^│\s*(\d+)\s*│.*│\s*(\d+)\s*│$", output, re.MULTILINE)
    return {code: int(n) for code, n in rows}


@dataclass
class StubIngest:
    password: str = "pw"
    delay: float = 0.0
    stored: Counter[bytes] = field(default_factory=Counter)
    answers: Counter[int] = field(default_factory=Counter)
    paths: Counter[str] = field(default_factory=Counter)
    # The next requests' (status, Retry-After, body): a JSON message when the body is None.
    failures: list[tuple[int, str, str | None]] = field(default_factory=list)
    short_results: bool = False  # answer one result fewer than the records sent
    unavailable_once: set[bytes] = field(default_factory=set)
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.paths[request.path] += 1
        if request.path not in ("/v1/cdrs", "/v1/pbx/asterisk", "/v1/pbx/freeswitch"):
            return web.Response(text="404: Not Found", status=404)
        user = f"DB/ACC:{self.password}".encode()
        if request.headers.get("authorization") != "Basic " + base64.b64encode(user).decode():
            return web.json_response({"code": 50390, "message": "APIPassword wrong"}, status=401)
        if self.failures:
            status, retry_after, text = self.failures.pop(0)
            if text is not None:
                return web.Response(text=text, status=status, headers={"retry-after": retry_after})
            return web.json_response(
                {"message": "Kafka unreachable"},
                status=status,
                headers={"retry-after": retry_after},
            )
        body = await request.read()
        if request.path.endswith("/freeswitch"):
            records = [json.dumps(doc, sort_keys=True).encode() for doc in json.loads(body)]
        else:
            records = [line for line in body.splitlines() if line.strip()]
        if any(b"HUGE" in r for r in records):
            return web.json_response({"message": "body over 10 MiB"}, status=413)
        if self.delay:
            await asyncio.sleep(self.delay)  # a slow server, so requests are in flight
        results = [self._answer(i, r) for i, r in enumerate(records)]
        if self.short_results:
            results.pop()
        return web.json_response(
            {"accepted": sum(r["code"] == 0 for r in results), "results": results}
        )

    def _answer(self, index: int, record: bytes) -> dict[str, object]:
        if record in self.unavailable_once:
            self.unavailable_once.discard(record)
            code, message = 50503, "try again"
        elif b"BAD" in record:
            code, message = 50416, "duration: not a whole number"
        elif self.stored[record]:
            code, message = 50421, ""
        else:
            self.stored[record] += 1
            code, message = 0, ""
        self.answers[code] += 1
        return {"index": index, "code": code, "id": None, "message": message}

    def __enter__(self) -> StubIngest:
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        # A handler still sleeping (a slow-server test) must not hold up the teardown.
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)

        async def start() -> None:
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
            ready.set()

        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        assert ready.is_set()
        return self

    def __exit__(self, *_: object) -> None:
        async def stop() -> None:
            await self._runner.cleanup()
            # Handlers of a slow-server test may still be sleeping: end them, not leak them.
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
