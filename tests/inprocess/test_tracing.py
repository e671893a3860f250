"""Traces through the whole pipeline in one process (cdrmodel.tracing): ingest app -> Tansu ->
rater app -> PostgreSQL -> notifier app -> a real receiver on loopback, recorded by an
in-memory exporter on a real SDK provider; nothing is mocked but the collector."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cdrmodel import tracing
from cdrmodel.kafka import RATED, SUBMITTED
from tests.helpers import Receiver, wait_for
from tests.inprocess.conftest import Pipeline, PipelineFactory


def _of_trace(spans: Sequence[ReadableSpan], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context is not None and s.context.trace_id == trace_id]


def _ancestry(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    """`span`, its parent, its parent's parent ... as far as the recorded spans go."""
    chain = [span]
    while chain[-1].parent is not None and chain[-1].parent.span_id in by_id:
        chain.append(by_id[chain[-1].parent.span_id])
    return chain


async def test_one_call_is_one_trace_from_the_pbx_request_to_the_crm_push(
    exporter: InMemorySpanExporter, pipeline_factory: PipelineFactory, receiver: Receiver
) -> None:
    async with pipeline_factory() as p:
        tenant = await p.tenant()
        await p.subscribe(tenant, receiver.url)
        exporter.clear()
        assert await p.submit(tenant, ExternalID="trace1") == "0"
        await wait_for(lambda: receiver.requests, what="the push", timeout=30)

        def push_spans() -> list[ReadableSpan]:
            # The push span ends once the CRM's answer is read, just after it arrived.
            return [s for s in exporter.get_finished_spans() if s.name == "push"]

        (push,) = await wait_for(push_spans, what="the push span", timeout=30)
        spans = exporter.get_finished_spans()
        (row,) = await _deliveries(p, tenant.database_id)

    (request,) = [
        s
        for s in spans
        if s.kind is SpanKind.SERVER
        and (s.attributes or {}).get("url.path") == "/api_submitcdr.aspx"
    ]
    assert request.parent is None  # the PBX sent no traceparent: the trace begins here
    assert request.context is not None and push.context is not None
    trace_id = request.context.trace_id
    assert push.context.trace_id == trace_id
    trace = _of_trace(spans, trace_id)
    by_id = {s.context.span_id: s for s in trace if s.context is not None}

    # The CRM was told the trace: its traceparent names the HTTP client span of the push.
    headers, _ = receiver.requests[0]
    version, header_trace, parent_id, flags = headers["traceparent"].split("-")
    assert (version, int(header_trace, 16)) == ("00", trace_id)
    assert int(flags, 16) & 1  # sampled (the SDK also sets trace context 2's random bit)
    client = by_id[int(parent_id, 16)]
    assert client.kind is SpanKind.CLIENT and client.name == "POST"
    assert (client.attributes or {}).get("http.status_code") == 200

    # Each hop is a child of the one before, from the HTTP client span back to the request.
    hops = [(s.kind, s.name) for s in _ancestry(client, by_id)]
    ns = p.namespace
    assert hops[:6] == [
        (SpanKind.CLIENT, "POST"),
        (SpanKind.INTERNAL, "push"),
        (SpanKind.CONSUMER, f"process {ns}{RATED}"),
        (SpanKind.PRODUCER, f"send {ns}{RATED}"),
        (SpanKind.CONSUMER, f"process {ns}{SUBMITTED}"),
        (SpanKind.PRODUCER, f"send {ns}{SUBMITTED}"),
    ]
    assert hops[-1] == (SpanKind.SERVER, request.name)
    push_attributes = push.attributes or {}
    assert push_attributes["cdrflow.subscription"] == "crm"
    assert push_attributes["cdrflow.delivery.attempt"] == 1

    # Every service's statements are in it: the ingest's acknowledgement of the dedupe key,
    # the rater's insert of the priced record, the notifier's insert of the delivery.
    statements = [
        str((s.attributes or {}).get("db.statement", ""))
        for s in trace
        if (s.attributes or {}).get("db.system") == "postgresql"
    ]
    for statement in ("UPDATE ingest_key ", "INSERT INTO cdr ", "INSERT INTO delivery "):
        assert any(statement in q for q in statements), (statement, statements)

    # The row keeps the notifier's span for the event, which the push continued.
    assert row["traceparent"] is not None
    assert int(row["traceparent"].split("-")[2], 16) == push.parent.span_id  # type: ignore[union-attr]

    # The compat query string carries the password and the numbers: no span keeps them.
    recorded = [str(v) for s in spans for v in (s.attributes or {}).values()]
    assert not any(tenant.password in v or "16138220000" in v for v in recorded)
    assert (request.attributes or {})["url.query"].count("=REDACTED") == 7


async def _deliveries(p: Pipeline, database_id: str) -> list[asyncpg.Record]:
    return await p.sql("SELECT traceparent FROM delivery WHERE database_id = $1", database_id)


async def test_with_no_endpoint_nothing_is_traced_and_the_crm_gets_no_traceparent(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    # The shared pipeline is built as `cdrflow serve` builds its app with CDR_OTEL_ENDPOINT
    # unset: no provider, FastAPI's telemetry off, asyncpg and the push session untouched.
    assert not tracing.enabled()
    assert not hasattr(asyncpg.connection.Connection.fetch, "__wrapped__")
    assert pipeline.apps["ingest"]._telemetry["tracing"] is False
    tenant = await pipeline.tenant()
    await pipeline.subscribe(tenant, receiver.url)
    assert await pipeline.submit(tenant, ExternalID="untraced1") == "0"
    await wait_for(lambda: receiver.requests, what="the push", timeout=30)
    headers, _ = receiver.requests[0]
    assert "traceparent" not in headers
    (row,) = await _deliveries(pipeline, tenant.database_id)
    assert row["traceparent"] is None
