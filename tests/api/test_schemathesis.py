"""Property-based fuzzing of the served OpenAPI schema (schemathesis) against a real uvicorn
server: no 5xx, every response matches its documented schema and content type.

Driven through schemathesis' Python API (operation strategies + hypothesis), a bounded number
of examples per operation, so the whole run stays well under two minutes.
"""

from __future__ import annotations

import pytest

from regionsearch.testing.ci import require

schemathesis = require("schemathesis", "pip install -r requirements/test.txt")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance  # noqa: E402

from .conftest import API_KEY  # noqa: E402

EXAMPLES = 12
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.mark.slow
def test_openapi_conformance(live_server):
    schema = schemathesis.openapi.from_url(live_server.url + "/openapi.json")
    failures: list[str] = []
    seen = 0
    for result in schema.get_all_operations():
        op = result.ok()
        seen += 1

        @given(case=op.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(headers={"X-API-Key": API_KEY}, timeout=60, checks=CHECKS)

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:1500]}")
    assert seen >= 14
    assert not failures, "\n\n".join(failures)
