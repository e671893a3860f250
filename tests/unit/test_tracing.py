"""cdrmodel.tracing without I/O: off by default, the settings, the sampler, query redaction,
and the context a record's headers carry from a send to its process span."""

from __future__ import annotations

import pytest
from aiokafka import ConsumerRecord
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cdrmodel import tracing
from cdrmodel.settings import CommonSettings
from cdrmodel.web import build_app


def _settings(**values: object) -> CommonSettings:
    return CommonSettings(admin_token="x" * 8, **values)  # type: ignore[arg-type]


def _record(offset: int, headers: list[tuple[str, bytes]]) -> ConsumerRecord:
    return ConsumerRecord(
        topic="t",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=b"{}",
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=2,
        headers=tuple(headers),
    )


def test_with_no_endpoint_setup_installs_nothing_and_every_hook_is_inert() -> None:
    tracing.setup(_settings(), service="cdr_ingest")
    assert not tracing.enabled()
    assert tracing.current() is None
    assert tracing.sends("t", 2) is None
    assert tracing.http_trace_configs() == []
    assert tracing.fastapi_telemetry() == {"tracing": False, "metrics": False, "logs": False}
    with tracing.consuming([_record(0, [])], group="g"):
        assert tracing.record_traceparent(_record(0, [])) is None
    with tracing.resumed("00-" + "1" * 32 + "-" + "2" * 16 + "-01", "push") as span:
        assert span is None


def test_an_endpoint_installs_an_otlp_exporter_and_uninstall_removes_it() -> None:
    tracing.setup(
        _settings(otel_endpoint="http://127.0.0.1:1/", otel_sample_ratio=0.5), service="cdr_rater"
    )
    try:
        assert tracing.enabled()
        assert build_app(title="t", summary="s", lifespan=None, routers=[])._telemetry["tracing"]
        assert len(tracing.http_trace_configs()) == 1
        provider = tracing._provider
        assert provider is not None
        assert provider.resource.attributes["service.name"] == "cdrflow-rater"
        assert "TraceIdRatioBased{0.5}" in provider.sampler.get_description()
    finally:
        tracing.uninstall()
        if provider is not None:
            provider.shutdown()
    assert not tracing.enabled()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("https://collector:4318/", "https://collector:4318/v1/traces"),
        ("http://c:4318/v1/traces", "http://c:4318/v1/traces"),
    ],
)
def test_the_endpoint_is_the_collectors_otlp_http_base(value: str, expected: str) -> None:
    assert tracing.traces_url(value) == expected


def test_the_endpoint_must_be_an_http_url_and_blank_means_unset() -> None:
    assert _settings(otel_endpoint="").otel_endpoint is None
    with pytest.raises(ValueError, match="http"):
        _settings(otel_endpoint="collector:4317")
    with pytest.raises(ValueError):
        _settings(otel_sample_ratio=1.5)


@pytest.mark.parametrize(
    ("value", "whole", "expected"),
    [
        ("APIPassword=pw&Duration=90", True, "APIPassword=REDACTED&Duration=REDACTED"),
        ("/hook?token=abc&flag", False, "/hook?token=REDACTED&flag"),
        ("http://crm/hook", False, "http://crm/hook"),
    ],
)
def test_every_query_value_is_redacted(value: str, whole: bool, expected: str) -> None:
    assert tracing.redact_query(value, whole=whole) == expected


def test_a_client_span_without_a_parent_starts_no_trace(exporter: InMemorySpanExporter) -> None:
    tracer = tracing._tracer
    assert tracer is not None
    with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT) as claim:
        assert not claim.is_recording()  # a background loop's statement: dropped
    with tracer.start_as_current_span("GET", kind=SpanKind.SERVER):
        with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT) as query:
            assert query.is_recording()  # a statement of a request: kept
    assert [s.name for s in exporter.get_finished_spans()] == ["SELECT", "GET"]


def test_each_consumed_record_continues_the_send_that_produced_it(
    exporter: InMemorySpanExporter,
) -> None:
    tracer = tracing._tracer
    assert tracer is not None
    with tracer.start_as_current_span("request a") as a:
        origin_a = tracing.current()
    with tracer.start_as_current_span("request b") as b:
        origin_b = tracing.current()
    sends = tracing.sends("t", 3, [origin_a, origin_b, origin_a])
    assert sends is not None
    assert sends.headers[0] == sends.headers[2] != sends.headers[1]
    sends.end([True, False, True])
    records = [_record(n, h) for n, h in enumerate(sends.headers)]
    with tracing.consuming(records, group="g"):
        kept = [tracing.record_traceparent(r) for r in records]
    finished = exporter.get_finished_spans()
    send_a, send_b = [s for s in finished if s.name == "send t"]  # one per origin, not record
    assert send_a.parent.span_id == a.get_span_context().span_id  # type: ignore[union-attr]
    assert send_b.parent.span_id == b.get_span_context().span_id  # type: ignore[union-attr]
    assert not send_b.status.is_ok and send_a.status.is_ok
    first, second, third = [s for s in finished if s.name == "process t"]
    assert first.parent.span_id == send_a.context.span_id  # type: ignore[union-attr]
    assert second.parent.span_id == send_b.context.span_id  # type: ignore[union-attr]
    # The batch's shared work ran under the first record's span; the others link to it.
    assert [link.context.span_id for link in third.links] == [first.context.span_id]
    assert kept[1] is not None and f"{second.context.span_id:016x}" in kept[1]
