"""Property-based fuzzing of the API from its own OpenAPI document (schemathesis).

Every operation gets generated requests, authenticated as an admin with an API token (so
writes are reached too); no response may be a 5xx or break the documented schema. Kept to
about 15 examples per operation so the run stays well under a minute. (schemathesis's
`from_fixture` does not work with this pytest, so the operations are walked by hand.)
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from webworld import WebWorld

EXAMPLES_PER_OPERATION = 15


def test_no_request_gets_a_5xx_or_breaks_the_schema(world: WebWorld) -> None:
    headers = {"Authorization": f"Bearer {world.tokens['admin']}"}
    # the document itself needs auth too (docs/api.md)
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", world.app, headers=headers)
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/health"):
            continue  # 503 is its documented answer while no scheduler runs
        _fuzz(operation, headers)
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert len(checked) >= 15, f"too few operations fuzzed: {checked}"


def _fuzz(operation: Any, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers)

    check()
