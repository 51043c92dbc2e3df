"""Property-based fuzzing of the API from its own OpenAPI document (schemathesis).

Every operation the app serves (checked against the routes of `drayman.web.api`, so a new
one cannot be missed) gets generated requests, authenticated as an admin with an API token
(so writes are reached too), in three passes: data that fits the document (positive), data
that breaks it (negative: ids, offsets and positions beyond their bounds, wrong types, bad
formats, unknown fields), and one fitting request aimed at real objects with each path and
query parameter and the body swapped in turn for each hostile value the generators rarely
reach (NUL, a date that overflows once moved to UTC, an integer beyond 2**63, a deep, huge or
non-text conf, a reserved run id). No response may be a
5xx or break the documented schema, and data the document forbids must be refused; `/health`
alone may answer 503 (no scheduler runs here). test_web_hostile_input.py spells out the same
values with the answers expected, on the pages too. (schemathesis's `from_fixture` does not
work with this pytest, so the operations are walked by hand.)
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy import func, select
from webworld import WebWorld, new_run

from drayman.store.schema import task_try
from drayman.web import api

pytestmark = pytest.mark.slow  # about 1,800 generated requests

EXAMPLES = {GenerationMode.POSITIVE: 40, GenerationMode.NEGATIVE: 20}
# a request the document allows may still be refused, with a 4xx, for what a schema cannot
# say: a NUL character, a conf that fails a param's type, a reserved run id, a missing DAG
NOT_CHECKED = [positive_data_acceptance]
FUZZ_RUN = "fuzz_target"

HOSTILE_TEXT = [
    "a\x00b",
    "9999-12-31T23:00:00-05:00",
    "0001-01-01T00:30:00+01:00",
    str(2**63),
    str(2**31),
    "-2",
    "9" * 40,
    "..",
    "scheduled__2026-01-01T00:00:00+00:00",
    "a/b",
    "\U0001f682" * 300,
]
HOSTILE_BODIES: list[Any] = [
    {"conf": {"a": "\x00"}},
    {"conf": {"\x00": 1}},
    {"conf": {"a": "\ud800"}},
    {"conf": {"a": json.loads("[" * 40 + "]" * 40)}},
    {"conf": {"a": "x" * 70_000}},
    {"conf": {"rows": "many", "label": 5}},
    {"conf": {"a": 10**400}},
    {"run_id": "scheduled__2026-01-01T00:00:00+00:00"},
    {"run_id": "backfill__x"},
    {"run_id": "../x"},
    {"run_id": "a\x00"},
    {"run_id": "r" * 251},
    {"map_index": 2**63},
    {"map_index": -(2**63)},
    {"state": "success\x00"},
    {"paused": "\x00"},
]


def test_no_request_gets_a_5xx_or_breaks_the_schema(world: WebWorld) -> None:
    headers = {"Authorization": f"Bearer {world.tokens['admin']}"}
    # the document itself needs auth too (docs/api.md)
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", world.app, headers=headers)
    # negative cases aim at a real run (its own), so what they break is the query or body
    # and not only a string path parameter (those are cheap to refuse, slow to generate)
    real = {
        "dag_id": "web_demo",
        "run_id": new_run(world, FUZZ_RUN),
        "task_id": "extract",
        "try_id": str(_a_try(world)),
    }
    fuzzed: set[str] = set()
    cases = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode, examples in EXAMPLES.items():
            cases += _fuzz(operation, headers, mode, examples, real)
        cases += _fuzz_hostile(operation, headers, real)
        fuzzed.add(f"{operation.method.upper()} {operation.path}")
    assert fuzzed == _served(), "the OpenAPI document and the app's routes differ"
    print(f"schemathesis: {cases} cases over {len(fuzzed)} operations")
    assert cases >= 40 * len(fuzzed) + 20 * 10 + 11 * 30, cases


def _a_try(world: WebWorld) -> int:
    with world.store.read() as conn:
        return int(conn.execute(select(func.min(task_try.c.id))).scalar_one())


def _served() -> set[str]:
    """Every API operation: the routes of each module of `drayman.web.api` (not the
    document's list), so a route left out of the document cannot escape the fuzzing."""
    served = {f"GET {route.path}" for route in api.health_router.routes}  # /health
    for info in pkgutil.iter_modules(api.__path__):
        router = getattr(importlib.import_module(f"{api.__name__}.{info.name}"), "router", None)
        for route in getattr(router, "routes", ()):
            if isinstance(route, APIRoute):
                served |= {f"{method} /api/v1{route.path}" for method in route.methods}
    return served


def _fuzz_settings(max_examples: int) -> settings:
    """The same cases on every run (derandomized, no example database), with no deadline or
    health check: a case is a real request to the app, slow next to what Hypothesis expects."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def _fuzz(
    operation: Any,
    headers: dict[str, str],
    mode: GenerationMode,
    examples: int,
    real: dict[str, str],
) -> int:
    health = operation.path.endswith("/health")
    negative = mode is GenerationMode.NEGATIVE
    strings = ("dag_id", "run_id", "task_id")  # an int path parameter is cheap to break
    fixed = {k: real[k] for k in strings if "{" + k + "}" in operation.path} if negative else {}
    ran = 0

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed or None))
    @_fuzz_settings(examples)
    def check(case: schemathesis.Case) -> None:
        nonlocal ran
        ran += 1
        _call(case, headers, health)

    try:
        check()
    except Unsatisfiable:  # nothing left to break: no query, body or int path parameter
        assert negative and ran == 0, operation.path
    return ran


def _fuzz_hostile(operation: Any, headers: dict[str, str], real: dict[str, str]) -> int:
    """Every path and query parameter, and the body, made hostile in turn with each hostile
    value, on one positive case aimed at real objects (so the value reaches the code behind
    the lookup). PATCH keeps a generated DAG id: pausing a real DAG would change the world."""
    fixed = {k: v for k, v in real.items() if "{" + k + "}" in operation.path}
    if operation.method.lower() == "patch":
        fixed = {}
    swaps: list[tuple[str, str, Any]] = [
        (where, p.name, value)
        for where, params in (("path", operation.path_parameters), ("query", operation.query))
        for p in params
        for value in HOSTILE_TEXT
    ]
    swaps += [("body", "", body) for body in HOSTILE_BODIES if list(operation.body)]
    ran = 0

    @given(case=operation.as_strategy(path_parameters=fixed or None))
    @_fuzz_settings(1)
    def check(case: schemathesis.Case) -> None:
        nonlocal ran
        path, query, body = dict(case.path_parameters or {}), dict(case.query or {}), case.body
        for where, name, value in swaps:
            ran += 1
            if where == "body":
                case.body = value
            elif where == "path":
                # %2E: a client would resolve a literal ".." before the server saw it
                case.path_parameters = {**path, name: quote(value, safe="").replace(".", "%2E")}
            else:
                case.query = {**query, name: value}
            try:
                _call(case, headers, health=False)
            finally:
                case.path_parameters, case.query, case.body = path, query, body

    if swaps:
        check()
    return ran


def _call(case: schemathesis.Case, headers: dict[str, str], health: bool) -> None:
    if health:  # 503 is its documented answer while no scheduler runs
        response = case.call_and_validate(
            headers=headers, excluded_checks=[*NOT_CHECKED, not_a_server_error]
        )
        assert response.status_code < 500 or response.status_code == 503, response.text
    else:
        case.call_and_validate(headers=headers, excluded_checks=NOT_CHECKED)
