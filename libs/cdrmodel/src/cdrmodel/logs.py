"""Logging: stdlib and structlog records as one JSON object a line on stderr, or console text."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor

LogFormat = Literal["json", "console"]

# Keys whose values never reach a log line, whoever passes them (a structlog call with
# `password=...`, an `extra={"secret": ...}` on a stdlib call). Checked by substring so that
# `api_password`, `admin_token` and `webhook_secret` are caught too.
_SECRET_WORDS = ("password", "secret", "token", "authorization", "api_key")
REDACTED = "[redacted]"


def _redact(_logger: Any, _name: str, event: EventDict) -> EventDict:
    for key in event:
        if key != "event" and any(word in key.lower() for word in _SECRET_WORDS):
            event[key] = REDACTED
    return event


def _json_dumps(obj: MutableMapping[str, Any], **_kw: Any) -> str:
    # default=str: an odd value (a Decimal, a UUID) must not cost the whole line.
    return orjson.dumps(obj, default=str).decode()


def _renderer(fmt: LogFormat) -> list[Processor]:
    if fmt == "console":
        # Plain tracebacks: rich's would print every frame's locals, secrets included.
        console = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
        return [_redact, console]
    return [
        structlog.processors.format_exc_info,
        _redact,
        structlog.processors.JSONRenderer(_json_dumps),
    ]


def configure_logging(
    level: str = "info",
    *,
    service: str = "cdrflow",
    fmt: LogFormat = "json",
    stream: TextIO | None = None,
) -> None:
    """Route stdlib `logging` and structlog through one handler on `stream` (stderr).

    Every line carries `timestamp` (UTC, ISO 8601), `level`, `logger` and `event`; an
    exception adds `exception`, its text with the traceback.
    """
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *_renderer(fmt)],
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Python's warnings go through logging too, as JSON lines, rather than raw to stderr.
    logging.captureWarnings(True)
    # Chatty libraries: their info lines are per request or per poll.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger(service).setLevel(level.upper())

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
