"""The ingest producer gives up on a batch before the client is told 50503 (publisher.give_up_ms)."""

from __future__ import annotations

import pytest

from cdr_ingest.publisher import give_up_ms


@pytest.mark.parametrize("produce_timeout", [0.3, 1.0, 1.5, 10.0, 60.0])
def test_two_request_timeouts_fit_in_the_answer_budget(produce_timeout: float) -> None:
    # A batch queued behind a request in flight, then in flight itself, is failed by aiokafka
    # at most two request timeouts after it was made: that must come before the 50503.
    assert 2 * give_up_ms(produce_timeout) < produce_timeout * 1000


def test_the_request_timeout_never_drops_below_a_round_trip() -> None:
    assert give_up_ms(0.01) >= 100
