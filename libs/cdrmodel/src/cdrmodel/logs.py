"""Logging: stdlib and structlog records as one JSON object a line on stderr, or console text."""

from __future__ import annotations

import logging
import re
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


# Secrets inside text: the password of a URL's userinfo (`postgresql://app:pw@db/...`, a push
# URL `https://user:pw@crm/...`) and a secret-named query parameter (`APIPassword=...`,
# `password=...`), wherever a message, an exception's text or its traceback quotes them: a
# driver error quoting a DSN, SQL parameters holding a subscription's URL, an HTTP client
# error quoting the URL it called.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@'\"]*:)[^/\s@'\"]+@")
_SECRET_PARAM = re.compile(r"(?P<head>(?i:[a-z_]*(?:password|secret|token))=)[^&\s'\"]+")


def scrub(text: str) -> str:
    """`text` with URL passwords and secret-named query parameters replaced by REDACTED."""
    if "@" in text:
        text = _URL_PASSWORD.sub(rf"\g<head>{REDACTED}@", text)
    if "=" in text:
        text = _SECRET_PARAM.sub(rf"\g<head>{REDACTED}", text)
    return text


def _redact(_logger: Any, _name: str, event: EventDict) -> EventDict:
    for key, value in event.items():
        if key != "event" and any(word in key.lower() for word in _SECRET_WORDS):
            event[key] = REDACTED
        elif isinstance(value, str):
            event[key] = scrub(value)
    return event


def _drop_color(_logger: Any, _name: str, event: EventDict) -> EventDict:
    # uvicorn passes its message again with terminal colour codes as `extra`.
    event.pop("color_message", None)
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
        _drop_color,
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
