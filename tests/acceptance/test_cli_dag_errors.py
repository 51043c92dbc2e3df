"""`dags parse` and `dags errors` as a CI gate: non-zero while any DAG file fails to import,
`--exit-zero` to only report; each error names its file and line once.

Exit codes: 0 no import error; 1 some file has one (docs/cli.md).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from support.cli import Drayman

GOOD = """
    from drayman import DAG, Shell

    with DAG("good", schedule=None):
        Shell("hello", "echo hello")
"""

BAD_TIMEZONE = """
    from drayman import DAG

    DAG("bad_tz", timezone="Europe/Berlim")
"""

FIXED = """
    from drayman import DAG

    DAG("bad_tz", timezone="Europe/Berlin")
"""

SYNTAX = """
    from drayman import DAG

    DAG("broken", schedule=None
"""

BAD_TZ_LINE = (
    "bad_tz.py:3: DAG 'bad_tz': unknown timezone 'Europe/Berlim' (did you mean 'Europe/Berlin'?)"
)


def _installation(make_drayman: Callable[..., Drayman]) -> Drayman:
    d = make_drayman("dag-errors")
    d.write_dag("good.py", GOOD)
    d.write_dag("bad_tz.py", BAD_TIMEZONE)
    d.write_dag("syntax.py", SYNTAX)
    d.ok("db", "migrate")
    return d


@pytest.mark.slow
def test_parse_and_errors_fail_while_a_file_is_broken(
    make_drayman: Callable[..., Drayman],
) -> None:
    d = _installation(make_drayman)

    parsed = d.cli("dags", "parse")
    assert parsed.returncode == 1, d.last
    assert "published bundle" in parsed.stdout, d.last
    assert f"import error: {BAD_TZ_LINE}" in parsed.stderr.splitlines(), d.last
    assert "import error: syntax.py:3: SyntaxError" in parsed.stderr, d.last
    assert "2 DAG files have import errors" in parsed.stderr, d.last
    assert parsed.stderr.count("Europe/Berlim") == 1, f"each error is printed once:\n{d.last}"

    again = d.cli("dags", "parse")  # the folder is unchanged, and still broken
    assert again.returncode == 1, d.last
    assert "DAG folder unchanged" in again.stdout, d.last
    assert f"import error: {BAD_TZ_LINE}" in again.stderr.splitlines(), d.last

    errors = d.cli("dags", "errors")
    assert errors.returncode == 1, d.last
    assert BAD_TZ_LINE in errors.stdout.splitlines(), d.last

    as_json = d.cli("dags", "errors", "--json")
    assert as_json.returncode == 1, d.last
    by_file = {e["fileloc"]: e for e in json.loads(as_json.stdout)}
    assert by_file["bad_tz.py"] == {
        "fileloc": "bad_tz.py",
        "lineno": 3,
        "message": "DAG 'bad_tz': unknown timezone 'Europe/Berlim' (did you mean 'Europe/Berlin'?)",
    }


@pytest.mark.slow
def test_exit_zero_only_reports(make_drayman: Callable[..., Drayman]) -> None:
    d = _installation(make_drayman)
    parsed = d.cli("dags", "parse", "--exit-zero")
    assert parsed.returncode == 0, d.last
    assert f"import error: {BAD_TZ_LINE}" in parsed.stderr.splitlines(), d.last
    errors = d.cli("dags", "errors", "--exit-zero")
    assert errors.returncode == 0, d.last
    assert BAD_TZ_LINE in errors.stdout.splitlines(), d.last


@pytest.mark.slow
def test_a_fixed_folder_passes(make_drayman: Callable[..., Drayman]) -> None:
    d = _installation(make_drayman)
    assert d.cli("dags", "parse").returncode == 1, d.last
    d.write_dag("bad_tz.py", FIXED)
    (d.dags / "syntax.py").unlink()
    parsed = d.cli("dags", "parse")
    assert parsed.returncode == 0, d.last
    assert "import error" not in parsed.stderr, d.last
    errors = d.cli("dags", "errors")
    assert errors.returncode == 0, d.last
    assert errors.stdout.strip() == "no import errors", d.last


@pytest.mark.slow
def test_dags_list_names_each_location_once(make_drayman: Callable[..., Drayman]) -> None:
    d = _installation(make_drayman)
    d.cli("dags", "parse")
    listing = d.cli("dags", "list")
    assert listing.returncode == 0, d.last  # a listing, not a gate
    assert f"import error: {BAD_TZ_LINE}" in listing.stderr.splitlines(), d.last
