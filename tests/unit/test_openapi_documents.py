"""The OpenAPI documents describe what is answered: every JSON answer is a named model, and
every operation that takes input documents its error statuses with the one error body."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from cdr_ingest.app import create_app as create_ingest
from cdr_ingest.settings import IngestSettings
from cdr_notifier.app import create_app as create_notifier
from cdr_notifier.settings import NotifierSettings
from cdr_rater.app import create_app as create_rater
from cdr_rater.settings import RaterSettings
from tests.helpers import ADMIN_TOKEN

OPS_PATHS = {"/healthz", "/readyz", "/metrics"}


def _apps() -> dict[str, FastAPI]:
    # Building an app connects to nothing (the lifespan does), so no infrastructure is needed.
    common: dict[str, Any] = {"admin_token": ADMIN_TOKEN}
    return {
        "ingest": create_ingest(IngestSettings(**common)),
        "rater": create_rater(RaterSettings(**common)),
        "notifier": create_notifier(NotifierSettings(**common)),
    }


def _operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    spec = app.openapi()
    return [
        (path, method, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in {"get", "put", "post", "patch", "delete"}
    ]


@pytest.mark.parametrize("service", ["ingest", "rater", "notifier"])
def test_every_json_answer_is_a_named_model(service: str) -> None:
    loose = []
    for path, method, op in _operations(_apps()[service]):
        for status, response in op["responses"].items():
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            if schema is not None and "$ref" not in schema:
                loose.append(f"{method.upper()} {path} {status}: {schema}")
    assert loose == []


@pytest.mark.parametrize("service", ["ingest", "rater", "notifier"])
def test_operations_with_input_document_422_with_the_error_body(service: str) -> None:
    missing = []
    for path, method, op in _operations(_apps()[service]):
        if path in OPS_PATHS or path == "/api_submitcdr.aspx":  # text/plain codes, always 200
            continue
        if path == "/api/cdr":  # seed 002's own error shape, and 400 for a parameter
            assert op["responses"]["400"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/CompatError"
            }
            continue
        body = op["responses"].get("422", {}).get("content", {}).get("application/json", {})
        if body.get("schema", {}).get("$ref") != "#/components/schemas/ErrorBody":
            missing.append(f"{method.upper()} {path}")
    assert missing == []
