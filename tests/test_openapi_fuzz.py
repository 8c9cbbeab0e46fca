"""schemathesis against /openapi.json on a real server: generated requests (valid and
invalid, with admin and customer tokens) never get a 5xx, and every answer matches the
document (status code listed, JSON body of the declared schema, content type)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.http.api import openapi_document
from tests.support import ServerProcess, auth

schema = schemathesis.openapi.from_dict(openapi_document())
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def token_for(path: str) -> dict[str, str]:
    return auth("fuzz-admin", "admin") if path.startswith("/admin") else auth("fuzz-customer")


@pytest.mark.slow
@schema.exclude(path="/metrics").parametrize()
@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_generated_requests_get_documented_answers(case: Any, server: ServerProcess) -> None:
    case.call_and_validate(
        base_url=server.url, headers=token_for(case.path), checks=CHECKS, timeout=30
    )
