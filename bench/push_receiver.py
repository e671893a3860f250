"""The CRM of `bench/notifier_bench.py`: an aiohttp server answering every POST `{"Err":0}`.

One process listens on every `--port`; a POST to a `--hang-port` is answered only after
`--hang-seconds` (a CRM that hangs past the notifier's push timeout). `GET /ping` answers
`ok` (readiness), `GET /stats` the POSTs answered so far per port, as JSON.
"""

from __future__ import annotations

import argparse
import asyncio

import orjson
import uvloop
from aiohttp import web

ACK = b'{"Err":0}'


def make_app(counts: dict[int, int], hang: set[int], hang_seconds: float) -> web.Application:
    async def push(request: web.Request) -> web.Response:
        await request.read()
        port = request.transport.get_extra_info("sockname")[1] if request.transport else 0
        if port in hang:
            await asyncio.sleep(hang_seconds)
        counts[port] = counts.get(port, 0) + 1
        return web.Response(body=ACK, content_type="application/json")

    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({str(k): v for k, v in counts.items()}))

    app = web.Application()
    app.router.add_get("/ping", ping)
    app.router.add_get("/stats", stats)
    app.router.add_post("/{tail:.*}", push)
    return app


async def serve(ports: list[int], hang: set[int], hang_seconds: float) -> None:
    counts: dict[int, int] = {}
    runner = web.AppRunner(make_app(counts, hang, hang_seconds), access_log=None)
    await runner.setup()
    for port in ports:
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, action="append", required=True)
    parser.add_argument("--hang-port", type=int, action="append", default=[])
    parser.add_argument("--hang-seconds", type=float, default=0.0)
    args = parser.parse_args()
    ports = [*args.port, *(p for p in args.hang_port if p not in args.port)]
    uvloop.run(serve(ports, set(args.hang_port), args.hang_seconds))


if __name__ == "__main__":
    main()
