"""Traces (OpenTelemetry), off unless CDR_OTEL_ENDPOINT is set, and the trace context carried
where no instrumentation carries it: Kafka record headers and the delivery table.

One call is one trace, from the PBX's request to the CRM's push:

    ingest   HTTP server span (FastAPI's native telemetry) > statements > send cdr.submitted.v1
    rater    process cdr.submitted.v1 (child of the send, read from the record's traceparent
             header) > statements > send cdr.rated.v1
    notifier process cdr.rated.v1 > statements; the delivery row keeps that span's traceparent
             (delivery.traceparent), and each push of the row, however much later and from
             whichever replica claims it, is a `push` span under it > the HTTP client span,
             whose traceparent header the CRM receives

Statements are spans of whatever span is current (the asyncpg instrumentation, which sees
SQLAlchemy's statements and the dispatcher's own alike).

Off (no endpoint), nothing here imports the SDK or an instrumentation, no provider exists, no
app or client is instrumented, and each hook below costs one test of a module global per
request, batch or push: the hot paths are what they were.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Link, Span, SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    import aiohttp
    from aiokafka import ConsumerRecord
    from fastapi.telemetry import TelemetryConfig
    from opentelemetry.sdk.trace import TracerProvider

    from cdrmodel.settings import CommonSettings

log = logging.getLogger(__name__)

# W3C trace context only, explicitly: a Kafka header and a TEXT column carry `traceparent`
# alone (no baggage), whatever OTEL_PROPAGATORS says.
_W3C = TraceContextTextMapPropagator()
TRACEPARENT = "traceparent"

Headers = list[tuple[str, bytes]]  # a Kafka record's headers, as aiokafka takes them

_provider: TracerProvider | None = None
_tracer: Tracer | None = None

_NOTHING: AbstractContextManager[None] = nullcontext()

# The HTTP paths that never start a trace: probes and scrapes, many a minute, all alike.
_UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def enabled() -> bool:
    return _tracer is not None


# -- setup --------------------------------------------------------------------------------


def setup(settings: CommonSettings, *, service: str) -> None:
    """Once per process, before its app is built (cdrmodel.web.serve): with CDR_OTEL_ENDPOINT
    set, spans go to that collector over OTLP/HTTP; unset, nothing at all is installed."""
    if settings.otel_endpoint is None:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = settings.otel_service_name or "cdrflow-" + service.removeprefix("cdr_")
    provider = make_provider(name, ratio=settings.otel_sample_ratio)
    # Batched, from a thread of its own: a collector that is slow or away drops spans (the
    # queue is bounded) and never holds a request.
    url = traces_url(settings.otel_endpoint)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    install(provider)
    log.info(
        "tracing to %s as %s (sampling %s of new traces)", url, name, settings.otel_sample_ratio
    )


def traces_url(endpoint: str) -> str:
    """CDR_OTEL_ENDPOINT is the collector's OTLP/HTTP base (as OTEL_EXPORTER_OTLP_ENDPOINT
    is); spans are posted to its /v1/traces."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def make_provider(service_name: str, *, ratio: float = 1.0) -> TracerProvider:
    """An SDK provider with our sampler and query redaction and no exporter yet: `setup` adds
    the OTLP one, tests an in-memory one."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}),
        sampler=ParentBased(_entry_points(ratio)),
    )
    provider.add_span_processor(_redacting_queries())
    return provider


def install(provider: TracerProvider) -> None:
    """Trace with `provider` from now on: the apps and push sessions built after this call, and
    every asyncpg statement. The provider is not made the global one, so `uninstall` (tests)
    leaves nothing behind."""
    global _provider, _tracer
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    if _provider is not None:
        raise RuntimeError("tracing is already installed")
    AsyncPGInstrumentor().instrument(tracer_provider=provider)
    _provider, _tracer = provider, provider.get_tracer("cdrflow")


def uninstall() -> None:
    """Undo `install` (tests); the caller shuts its provider down."""
    global _provider, _tracer
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    if _provider is not None:
        AsyncPGInstrumentor().uninstrument()
    _provider = _tracer = None


def _entry_points(ratio: float) -> Any:
    """The root sampler: `ratio` of new traces, except that a CLIENT span without a parent
    starts none. Those are the statements of background loops (the dispatcher's claims and
    outcome writes, the pruners): thousands of one-span traces a minute, none of them a call."""
    from opentelemetry.sdk.trace.sampling import (
        Decision,
        Sampler,
        SamplingResult,
        TraceIdRatioBased,
    )

    class EntryPoints(Sampler):
        def __init__(self) -> None:
            self._ratio = TraceIdRatioBased(ratio)

        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Any = None,
            links: Sequence[Link] | None = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            if kind is SpanKind.CLIENT:
                return SamplingResult(Decision.DROP)
            return self._ratio.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return f"EntryPoints{{{self._ratio.get_description()}}}"

    return EntryPoints()


# Span attributes that may hold a query string. The compat endpoint's carries the API password
# and both phone numbers; a CRM's URL may carry its token.
_URL_ATTRIBUTES = ("url.query", "url.full", "http.target", "http.url")


def redact_query(value: str, *, whole: bool) -> str:
    """Every query value replaced (`whole`: `value` is the query; else a URL or target)."""
    if not whole:
        base, sep, query = value.partition("?")
        return base + sep + redact_query(query, whole=True) if sep else value
    return "&".join(
        f"{name}=REDACTED" if eq else name
        for name, eq, _ in (field.partition("=") for field in value.split("&"))
    )


def _redacting_queries() -> Any:
    from opentelemetry.sdk.trace import SpanProcessor

    class RedactQueries(SpanProcessor):
        # on_start: the instrumentations set URLs when they start a span, and a span is
        # still writable here (it is read-only by on_end, when exporters see it).
        def on_start(self, span: Any, parent_context: Context | None = None) -> None:
            attributes = span.attributes or {}
            for key in _URL_ATTRIBUTES:
                value = attributes.get(key)
                if isinstance(value, str) and ("=" in value):
                    span.set_attribute(key, redact_query(value, whole=key == "url.query"))

    return RedactQueries()


def fastapi_telemetry() -> TelemetryConfig:
    """`FastAPI(telemetry=...)` for build_app: its native server spans with our provider, or
    nothing at all. (FastAPI's own default looks the global providers up on every request:
    6% of ingest's CPU under compat load, for no span.) Metrics stay Prometheus'."""
    if _provider is None:
        return {"tracing": False, "metrics": False, "logs": False}
    return {
        "tracing": True,
        "tracer_provider": _provider,
        "metrics": False,
        "logs": False,
        "exclude": lambda scope: scope.get("path") in _UNTRACED_PATHS,
    }


def http_trace_configs() -> list[aiohttp.TraceConfig]:
    """The push session's `trace_configs`: a CLIENT span per push, which also sets the
    `traceparent` header. Only that session is instrumented, not aiohttp as a whole."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config

    # The span keeps the CRM's URL without its query (where a token may be).
    return [
        create_trace_config(
            url_filter=lambda url: str(url.with_query(None)), tracer_provider=_provider
        )
    ]


# -- producing ----------------------------------------------------------------------------


def current() -> Context | None:
    """The caller's context, for work another task finishes (a group commit's produce); None
    while tracing is off."""
    return None if _tracer is None else otel_context.get_current()


def within(origin: Context | None) -> AbstractContextManager[None]:
    """`origin` (from `current`) is the current context inside the block; None: no change."""
    return _NOTHING if origin is None else _attached(origin)


@contextmanager
def _attached(origin: Context) -> Iterator[None]:
    token = otel_context.attach(origin)
    try:
        yield
    finally:
        otel_context.detach(token)


class Sends:
    """The PRODUCER spans of one list of records: one span per distinct origin (a request; a
    consumed record), and the headers that carry its context, one entry per record."""

    __slots__ = ("_members", "_spans", "headers")

    def __init__(self, tracer: Tracer, topic: str, origins: Sequence[Context | None]) -> None:
        by_origin: dict[int, int] = {}
        self._spans: list[Span] = []
        self._members: list[list[int]] = []
        carried: list[Headers] = []
        self.headers: list[Headers] = []
        for i, origin in enumerate(origins):
            n = by_origin.get(id(origin))
            if n is None:
                n = by_origin[id(origin)] = len(self._spans)
                span = tracer.start_span(
                    f"send {topic}",
                    context=origin,
                    kind=SpanKind.PRODUCER,
                    attributes={
                        "messaging.system": "kafka",
                        "messaging.operation.type": "send",
                        "messaging.destination.name": topic,
                    },
                )
                carrier: dict[str, str] = {}
                _W3C.inject(carrier, context=trace.set_span_in_context(span, origin))
                self._spans.append(span)
                self._members.append([])
                carried.append([(k, v.encode()) for k, v in carrier.items()])
            self._members[n].append(i)
            self.headers.append(carried[n])

    def end(self, acknowledged: Sequence[bool] | None = None) -> None:
        """Each span ends, failed unless the broker acknowledged all its records (None:
        all were)."""
        for span, members in zip(self._spans, self._members, strict=True):
            count = len(members)
            span.set_attribute("messaging.batch.message_count", count)
            if acknowledged is not None and not all(acknowledged[i] for i in members):
                span.set_status(StatusCode.ERROR, "not acknowledged by the broker")
            span.end()


def sends(topic: str, count: int, origins: Sequence[Context | None] | None = None) -> Sends | None:
    """PRODUCER spans for `count` records about to be produced to `topic`, each continuing
    its entry of `origins` (None: all continue the current context); None while tracing is off."""
    if _tracer is None:
        return None
    if origins is None:
        origins = [otel_context.get_current()] * count
    return Sends(_tracer, topic, origins)


# -- consuming ----------------------------------------------------------------------------


class _RecordHeaders(Getter[Sequence[tuple[str, bytes]]]):
    def get(self, carrier: Sequence[tuple[str, bytes]], key: str) -> list[str] | None:
        found = [value.decode("latin-1") for name, value in carrier if name == key]
        return found or None

    def keys(self, carrier: Sequence[tuple[str, bytes]]) -> list[str]:
        return [name for name, _ in carrier]


_HEADERS = _RecordHeaders()
RecordKey = tuple[str, int, int]  # topic, partition, offset


class _Batch:
    """The spans of one consumed batch, one per record.

    A record's `process` span is a child of the span that produced it (its traceparent
    header), so each call stays one trace through a consumer that works in batches. The work
    the batch shares (one transaction, one publish step) can sit in only one trace: it runs
    under the first record's span, and every other record's span links to that one. (One
    batch span linking to the records would have split each call's trace at every hop.)
    """

    def __init__(self, tracer: Tracer, records: Sequence[ConsumerRecord], group: str) -> None:
        self.spans: dict[RecordKey, Span] = {}
        first: Span | None = None
        for rec in records:
            parent = _W3C.extract(rec.headers or (), getter=_HEADERS)
            span = tracer.start_span(
                f"process {rec.topic}",
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": rec.topic,
                    "messaging.consumer.group.name": group,
                    "messaging.destination.partition.id": str(rec.partition),
                    "messaging.kafka.offset": rec.offset,
                    "messaging.batch.message_count": len(records),
                },
                links=None if first is None else [Link(first.get_span_context())],
            )
            first = first or span
            self.spans[(rec.topic, rec.partition, rec.offset)] = span
        self.first = first

    def end(self, error: BaseException | None) -> None:
        for span in self.spans.values():
            if error is not None:
                span.record_exception(error)
                span.set_status(StatusCode.ERROR, type(error).__name__)
            span.end()


_batch: ContextVar[_Batch | None] = ContextVar("cdrflow_trace_batch", default=None)


def consuming(records: Sequence[ConsumerRecord], *, group: str) -> AbstractContextManager[None]:
    """Around the handling of one consumed batch (cdrmodel.consumer.BatchProcessor)."""
    if _tracer is None or not records:
        return _NOTHING
    return _consuming(_Batch(_tracer, records, group))


@contextmanager
def _consuming(batch: _Batch) -> Iterator[None]:
    assert batch.first is not None
    token = otel_context.attach(trace.set_span_in_context(batch.first))
    batch_token = _batch.set(batch)
    error: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        error = exc
        raise
    finally:
        _batch.reset(batch_token)
        otel_context.detach(token)
        batch.end(error)


def record_context(record: ConsumerRecord) -> Context | None:
    """The context of `record`'s `process` span, inside `consuming`; None while off."""
    batch = _batch.get()
    if batch is None:
        return None
    span = batch.spans.get((record.topic, record.partition, record.offset))
    return None if span is None else trace.set_span_in_context(span)


def record_traceparent(record: ConsumerRecord) -> str | None:
    """`record_context` as a W3C traceparent, to keep in a row (delivery.traceparent)."""
    ctx = record_context(record)
    if ctx is None:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=ctx)
    return carrier.get(TRACEPARENT)


# -- pushing ------------------------------------------------------------------------------


def resumed(traceparent: str | None, name: str) -> AbstractContextManager[Span | None]:
    """A span continuing a stored traceparent (a new trace when the row has none, as rows
    recorded while tracing was off), current inside the block; None while tracing is off."""
    if _tracer is None:
        return _NOTHING
    parent = _W3C.extract({TRACEPARENT: traceparent}) if traceparent else None
    return _tracer.start_as_current_span(name, context=parent)


def failed(span: Span, error: str) -> None:
    span.set_status(StatusCode.ERROR, error)
