"""Templates: rendered from the context, strict about unknown names, and sandboxed."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from jinja2.sandbox import SecurityError

from drayman.authoring.context import Context
from drayman.authoring.templating import render, syntax_error
from drayman.exceptions import DagDefinitionError


def make_ctx(**overrides: object) -> Context:
    moment = datetime(2026, 1, 2, 3, tzinfo=ZoneInfo("America/Los_Angeles"))
    values: dict[str, object] = {
        "dag_id": "sales_daily",
        "run_id": "scheduled__2026-01-02",
        "task_id": "extract",
        "map_index": -1,
        "try_number": 2,
        "max_tries": 4,
        "run_type": "scheduled",
        "logical_date": moment,
        "data_interval_start": moment,
        "data_interval_end": moment,
        "timezone": "America/Los_Angeles",
        "bundle_version": "abc123",
        "params": {"out": "/tmp/out", "nested": {"k": "v"}},
        "conf": {"who": "me"},
    }
    values.update(overrides)
    return Context(**values)  # type: ignore[arg-type]


def test_context_names() -> None:
    template = (
        "{{ ds }} {{ ds_nodash }} {{ ts }} {{ dag_id }} {{ task_id }} {{ try_number }}/"
        "{{ max_tries }} {{ params.out }} {{ params['nested'].k }} {{ conf.who }} "
        "{{ ctx.run_type }} {{ logical_date.year }}"
    )
    assert render(template, make_ctx()) == (
        "2026-01-02 20260102 2026-01-02T03:00:00-08:00 sales_daily extract 2/4 /tmp/out v me "
        "scheduled 2026"
    )


def test_no_autoescape_and_trailing_newline_kept() -> None:
    assert render("echo '<a & b>' {{ params.out }}\n", make_ctx()) == "echo '<a & b>' /tmp/out\n"


def test_param_values_are_data_not_templates() -> None:
    ctx = make_ctx(params={"out": "{{ 7*7 }}"}, conf={"x": "{% for i in range(3) %}i{% endfor %}"})
    assert render("{{ params.out }} {{ conf.x }}", ctx) == (
        "{{ 7*7 }} {% for i in range(3) %}i{% endfor %}"
    )


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ params.outt }}", "template of task 'extract': 'params' has no attribute 'outt'"),
        ("{{ params['outt'] }}", "template of task 'extract': 'params' has no attribute 'outt'"),
        ("{{ conf.nope }}", "template of task 'extract': 'conf' has no attribute 'nope'"),
        ("{{ ctx.nope }}", "template of task 'extract': 'ctx' has no attribute 'nope'"),
        ("{{ dss }}", "template of task 'extract': 'dss' is undefined"),
        ("{{ ds ", "template of task 'extract': line 1: unexpected end of template"),
    ],
)
def test_errors_name_the_task_and_the_missing_name(template: str, message: str) -> None:
    with pytest.raises(DagDefinitionError) as caught:
        render(template, make_ctx())
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__ }}",
        "{{ ctx.__init__.__globals__ }}",
        "{{ params.update({'out': 'x'}) }}",
        "{{ params.clear() }}",
        "{{ cycler.__init__.__globals__.os }}",
    ],
)
def test_sandbox_escapes_raise_security_error(template: str) -> None:
    with pytest.raises(SecurityError):
        render(template, make_ctx())


def test_no_template_loading() -> None:
    with pytest.raises(TypeError, match="no loader"):
        render("{% include '/etc/passwd' %}", make_ctx())


def test_syntax_error_check() -> None:
    assert syntax_error("echo {{ ds }}") is None
    assert syntax_error("echo {{ ds") == (
        "line 1: unexpected end of template, expected 'end of print statement'."
    )
