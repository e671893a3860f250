"""One error base class (message, HTTP status, contract code) and the handlers that render it."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from cdrmodel.db import is_transient, record_fault

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """What every error answer of the JSON APIs carries."""

    message: str = Field(description="What went wrong, for a person")
    code: int | None = Field(None, description="The contract code (504xx), where one applies")
    detail: Any = Field(None, description="Per-field or per-line details, where there are any")


_ERROR_DESCRIPTIONS = {
    400: "The request cannot be read",
    401: "Credentials missing or wrong",
    403: "The account's allowed_networks do not take in the caller's address",
    404: "The tenant or the object in the path does not exist",
    409: "Conflicts with the current state",
    413: "The body is too large",
    422: "A parameter or a body field is invalid; `message` names it",
    503: "PostgreSQL or Kafka unreachable; nothing was changed, retry later",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, all with the one error body.

    Naming 422 here also replaces FastAPI's default validation-error schema, which does not
    describe what `install_error_handlers` answers.
    """
    return {
        status: {"model": ErrorBody, "description": _ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }


class CdrError(Exception):
    """An error a client caused or must know about; rendered as `{"code", "message"}`."""

    status_code: int = 400
    code: int | None = None

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: int | None = None,
        detail: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        if code is not None:
            self.code = code
        self.detail = detail

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message}
        if self.code is not None:
            out["code"] = self.code
        if self.detail is not None:
            out["detail"] = self.detail
        return out


class NotFound(CdrError):
    status_code = 404


class Unprocessable(CdrError):
    status_code = 422


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as JSON with a message; unknown routes are 404 JSON, never HTML."""

    async def on_cdr_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CdrError)
        headers = {"WWW-Authenticate": "Basic"} if exc.status_code == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such path: {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} not allowed on {request.url.path}"
        return JSONResponse({"message": message}, status_code=exc.status_code, headers=exc.headers)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"][1:]) or "body"
        return JSONResponse(
            {"message": f"{where}: {first['msg']}", "detail": errors}, status_code=422
        )

    async def on_database_error(request: Request, exc: Exception) -> JSONResponse:
        if is_transient(exc):
            return JSONResponse(
                {"message": "database unavailable; nothing was changed, retry later"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        if record_fault(exc):
            return JSONResponse(
                {"message": "a value in the request cannot be stored (out of range or invalid)"},
                status_code=422,
            )
        log.exception("database error on %s %s", request.method, request.url.path)
        return JSONResponse({"message": "internal error"}, status_code=500)

    async def on_out_of_range(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"message": f"value out of range: {exc}"}, status_code=422)

    app.add_exception_handler(CdrError, on_cdr_error)
    app.add_exception_handler(DBAPIError, on_database_error)
    app.add_exception_handler(OverflowError, on_out_of_range)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
