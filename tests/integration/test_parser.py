"""parse_bundle on real subprocesses: each way a DAG file can go wrong, next to good files.

One bundle holds every case and is parsed once (module fixture): this is also the proof that
a file that hangs, exits, crashes or raises leaves every other file's DAGs intact.
"""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pytest

from drayman.dag_processor import parser
from drayman.dag_processor.parser import ParseResult, parse_bundle
from drayman.exceptions import BundleError
from drayman.spec import ImportFailure

BUNDLE = {
    "etl/__init__.py": "",
    "etl/helpers.py": """
        GREETING = "echo hello"


        def boom():
            raise ValueError("bad input row")
    """,
    "a_good.py": """
        from drayman import DAG, Shell
        from etl.helpers import GREETING

        with DAG("good_a", schedule="@daily", start_date="2024-01-01"):
            Shell("greet", command=GREETING)
    """,
    "b_syntax.py": """
        from drayman import DAG

        with DAG("broken" schedule=None):
            pass
    """,
    "c_hang.py": """
        import subprocess
        import time
        from pathlib import Path

        from drayman import DAG

        child = subprocess.Popen(["sleep", "60"])
        Path("{pid_file}").write_text(str(child.pid))
        time.sleep(60)
    """,
    "d_exit.py": """
        import os

        from drayman import DAG

        os._exit(1)
    """,
    "e_raise.py": """
        from drayman import DAG
        from etl.helpers import boom

        boom()
    """,
    "f_duplicate.py": """
        from drayman import DAG, Shell

        with DAG("own_f", schedule=None):
            Shell("t", command="true")

        with DAG("good_a", schedule=None):
            Shell("t", command="true")
    """,
    "g_segfault.py": """
        import ctypes

        from drayman import DAG

        ctypes.string_at(0)
    """,
    "h_print.py": """
        import os
        import sys

        from drayman import DAG, Shell

        print('{"files": []}')
        sys.stdout.flush()
        os.write(1, b"raw bytes on fd 1")
        print("to stderr", file=sys.stderr)

        with DAG("printer", schedule=None):
            Shell("t", command="true")
    """,
    "i_cycle.py": """
        from drayman import DAG, Shell

        with DAG("cyclic", schedule=None):
            a = Shell("a", command="true")
            b = Shell("b", command="true")
            a >> b >> a
    """,
    "j_sys_exit.py": """
        import sys

        from drayman import DAG

        sys.exit(3)
    """,
    "notes.py": """
        # DAG helpers that never mention the package: never imported
        raise RuntimeError("must not be imported")
    """,
    "z_good.py": """
        from drayman import DAG, Shell

        with DAG("good_z", schedule=None):
            Shell("t", command="true")
    """,
}


def write_bundle(root: Path, files: dict[str, str], **values: str) -> Path:
    for relpath, text in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        code = textwrap.dedent(text).lstrip("\n")
        path.write_text(code.replace("{pid_file}", values.get("pid_file", "")))
    return root


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("parse")


@pytest.fixture(scope="module")
def result(workspace: Path) -> ParseResult:
    root = write_bundle(workspace / "bundle", BUNDLE, pid_file=str(workspace / "sleep.pid"))
    return parse_bundle(root, timeout_s=1.5)


def error_for(result: ParseResult, fileloc: str) -> ImportFailure:
    (error,) = [e for e in result.errors if e.fileloc == fileloc]
    return error


def test_good_files_are_parsed_whatever_the_others_do(result: ParseResult) -> None:
    assert sorted(d.spec.dag_id for d in result.dags) == ["good_a", "good_z", "own_f", "printer"]
    good_a = next(d for d in result.dags if d.spec.dag_id == "good_a")
    assert good_a.spec.fileloc == "a_good.py"
    assert good_a.spec.schedule == "@daily"
    assert good_a.spec.tasks["greet"].command == "echo hello"  # from a bundle-local module
    assert good_a.source.startswith("from drayman import DAG, Shell\n")


def test_only_the_broken_files_fail(result: ParseResult) -> None:
    assert sorted(e.fileloc for e in result.errors) == [
        "b_syntax.py",
        "c_hang.py",
        "d_exit.py",
        "e_raise.py",
        "f_duplicate.py",
        "g_segfault.py",
        "i_cycle.py",
        "j_sys_exit.py",
    ]


def test_syntax_error_has_its_line(result: ParseResult) -> None:
    error = error_for(result, "b_syntax.py")
    assert error.lineno == 3
    assert error.message.startswith("SyntaxError: ")


def test_hanging_import_times_out_with_the_line_it_hung_on(
    result: ParseResult, workspace: Path
) -> None:
    error = error_for(result, "c_hang.py")
    assert error.message == "import took longer than 1.5 s (DRAYMAN_PARSE_TIMEOUT_S)"
    assert error.lineno == 9
    assert result.duration_s < 10
    # what the import started died with it
    assert_dead(int((workspace / "sleep.pid").read_text()))


def test_exit_at_import(result: ParseResult) -> None:
    error = error_for(result, "d_exit.py")
    assert error.message == "importing the file ended its process (exit code 1)"


def test_segfault_at_import(result: ParseResult) -> None:
    error = error_for(result, "g_segfault.py")
    assert error.message == "importing the file ended its process (killed by signal SIGSEGV)"
    assert error.lineno == 5


def test_raising_import_points_at_the_deepest_line_in_the_file(result: ParseResult) -> None:
    error = error_for(result, "e_raise.py")
    assert error.lineno == 4
    assert error.message == "ValueError: bad input row (at etl/helpers.py:5)"


def test_sys_exit_is_an_error_not_an_exit(result: ParseResult) -> None:
    error = error_for(result, "j_sys_exit.py")
    assert (error.lineno, error.message) == (5, "SystemExit: 3")


def test_definition_error_gives_its_own_line_once(result: ParseResult) -> None:
    """Its "i_cycle.py:3: " prefix becomes the stored line: readers put the location in front,
    and a message that repeated it printed "i_cycle.py:3: i_cycle.py:3: DAG ..."."""
    error = error_for(result, "i_cycle.py")
    assert error.message == "DAG 'cyclic': cycle: a -> b -> a"
    assert error.lineno == 3


def test_duplicate_dag_id_fails_the_later_file_only(result: ParseResult) -> None:
    error = error_for(result, "f_duplicate.py")
    assert error.message == "DAG 'good_a' is already defined in a_good.py"
    assert error.lineno == 6
    owners = {d.spec.dag_id: d.spec.fileloc for d in result.dags}
    assert owners["good_a"] == "a_good.py"
    assert owners["own_f"] == "f_duplicate.py"


def test_user_code_never_runs_in_the_calling_process() -> None:
    assert "etl" not in sys.modules
    assert not [name for name in sys.modules if name.startswith("drayman_dagfile_")]


def test_a_bundle_without_dag_files_starts_no_process(tmp_path: Path) -> None:
    root = write_bundle(tmp_path, {"README.md": "DAG drayman", "x.py": "import os\n"})

    result = parse_bundle(root, timeout_s=1)

    assert (result.dags, result.errors) == ([], [])


def test_the_whole_parse_has_a_time_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pid_file = tmp_path / "sleep.pid"
    root = write_bundle(
        tmp_path / "bundle", {"c_hang.py": BUNDLE["c_hang.py"]}, pid_file=str(pid_file)
    )
    monkeypatch.setattr(parser, "overall_timeout", lambda *_: 2.0)

    with pytest.raises(BundleError, match="took longer than 2 s in all"):
        parse_bundle(root, timeout_s=30)
    assert_dead(int(pid_file.read_text()))


def assert_dead(pid: int) -> None:
    """The process is gone or a zombie waiting for its (new) parent to reap it."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return
        if "\nState:\tZ" in status:
            return
        time.sleep(0.05)
    pytest.fail(f"process {pid} outlived the parse")
