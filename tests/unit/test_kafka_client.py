"""KafkaClient: closing it while it is still connecting releases the half-started client."""

from __future__ import annotations

import asyncio

from cdrmodel.kafka import KafkaClient
from cdrmodel.supervisor import Supervisor
from tests.helpers import wait_for


class SlowStart:
    """A client whose start() never finishes, as a consumer stuck joining its group."""

    def __init__(self) -> None:
        self.starting = False
        self.stopped = False

    async def start(self) -> None:
        self.starting = True
        await asyncio.Event().wait()

    async def stop(self) -> None:
        self.stopped = True


async def test_close_while_connecting_stops_the_half_started_client() -> None:
    made: list[SlowStart] = []

    def factory() -> SlowStart:
        made.append(SlowStart())
        return made[-1]

    client: KafkaClient[SlowStart] = KafkaClient(factory, name="consumer")
    client.begin(Supervisor("test"))
    await wait_for(lambda: made and made[0].starting, timeout=5, what="start() to begin")
    await client.close()
    assert len(made) == 1 and made[0].stopped
    assert not await client.connected()
