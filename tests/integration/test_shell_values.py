"""Run conf and params reach a Shell command as data, never as shell code: real tries, real bash.

Each test runs one try end to end (forked child, bash) whose command prints a hostile value
into a file; the file must hold exactly the value, and the side effect the value asks for
(creating a `pwned` file) must not have happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drayman.runner.execute import run_try
from drayman.runner.loader import unload_all
from drayman.workloads import RunContextData, TryOutcome, TryWorkload, log_relpath

DAG_FILE = r"""
from drayman import DAG, Shell

OUT = {"OUT": "{{ params.out }}"}

with DAG("quoting", timezone="UTC"):
    Shell("conf_value", 'printf %s {{ conf.value }} > "$OUT"', env=OUT)
    Shell("param_value", 'printf %s {{ params.value }} > "$OUT"', env=OUT)
    Shell("in_a_pipe", 'printf %s {{ conf.value }} | cat > "$OUT" && true', env=OUT)
    Shell("in_a_loop", '{ {% for v in conf.value %}printf "[%s]" {{ v }}; {% endfor %}} > "$OUT"',
          env=OUT)
    Shell("words", "printf '[%s]' {{ conf.value }} > \"$OUT\"", env=OUT)
    Shell("joined", "printf '[%s]' {{ conf.value | join(' ') }} > \"$OUT\"", env=OUT)
    Shell("next_to_text", 'printf %s "$(dirname "$OUT")/"{{ conf.value }} > "$OUT"', env=OUT)
    Shell("raw", "printf '[%s]' {{ conf.value | unsafe_raw_shell }} > \"$OUT\"", env=OUT)
"""

# `{pwned}` is replaced by a path that must still not exist after the try.
HOSTILE = [
    "$(touch {pwned})",
    "`touch {pwned}`",
    "x; touch {pwned}",
    "x && touch {pwned}",
    "x || touch {pwned}",
    "x | touch {pwned}",
    "x & touch {pwned}",
    "x\ntouch {pwned}",
    "x\r\ntouch {pwned}\r\n",
    "it's'; touch {pwned}; echo '",
    "'",
    '"',
    'say "hi"; touch {pwned}; echo "',
    "> {pwned}",
    "x > {pwned}",
    "<(touch {pwned})",
    "*",
    "[a-z]*",
    "~ ~root",
    "$HOME ${HOME} $0 $$ $? $1",
    "$'\\x41' \\$(touch {pwned})",
    "{{ 7*7 }} {% if true %}jinja{% endif %}",
    "back\\slash\\",
    "",
    " ",
    "  leading and trailing  \t",
    "-n",
    "--help",
    "#not a comment",
    "!!",
    "a=b",
    "ünïcødé ✓ \u202e",
    "x" * 10_000,
]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bundle") / "v1"
    (root / "dags").mkdir(parents=True)
    (root / "dags" / "quoting.py").write_text(DAG_FILE)
    return root


class Try:
    """Runs one try of the quoting DAG with given conf and params; reads what it wrote."""

    def __init__(self, bundle: Path, tmp: Path) -> None:
        self.bundle = bundle
        self.logs = tmp / "logs"
        self.out = tmp / "out.txt"
        self.pwned = tmp / "pwned"
        self.count = 0

    def __call__(
        self,
        task_id: str,
        *,
        conf: dict[str, Any] | None = None,
        value: Any = None,
        out: str | None = None,
    ) -> TryOutcome:
        self.count += 1
        run = RunContextData(
            dag_id="quoting",
            run_id="manual__2026-01-02T03:00:00+00:00",
            run_type="manual",
            logical_date="2026-01-02T03:00:00+00:00",
            data_interval_start="2026-01-02T03:00:00+00:00",
            data_interval_end="2026-01-02T03:00:00+00:00",
            timezone="UTC",
            bundle_version="cd" * 32,
            params={"out": out or str(self.out), "value": value},
            conf=conf if conf is not None else {"value": value},
        )
        workload = TryWorkload(
            try_id=self.count,
            ti_id=self.count,
            task_id=task_id,
            map_index=-1,
            try_number=1,
            max_tries=1,
            fileloc="dags/quoting.py",
            run=run,
            log_path=log_relpath("quoting", run.run_id, task_id, -1, self.count),
        )
        return run_try(
            workload, self.bundle, self.logs, max_result_bytes=1024, on_started=lambda _: None
        )

    def hostile(self, template: str) -> str:
        return template.replace("{pwned}", str(self.pwned))

    def written(self) -> str:
        # bytes, not read_text(): universal newlines would turn "\r\n" into "\n"
        return self.out.read_bytes().decode()


@pytest.fixture
def run(bundle: Path, tmp_path: Path) -> Iterator[Try]:
    attempt = Try(bundle, tmp_path)
    yield attempt
    assert not attempt.pwned.exists(), "a value ran as shell code"
    assert not (bundle / "pwned").exists() and not list(bundle.glob("*touch*"))
    unload_all()  # this process is pytest's: leave no bundle on its sys.path


@pytest.mark.parametrize("task_id", ["conf_value", "param_value", "in_a_pipe"])
@pytest.mark.parametrize("template", HOSTILE, ids=lambda t: repr(t[:24]))
def test_a_hostile_value_reaches_the_command_as_its_literal_text(
    run: Try, task_id: str, template: str
) -> None:
    value = run.hostile(template)
    outcome = run(task_id, value=value)
    assert outcome.succeeded, outcome.error
    assert run.written() == value


def test_a_list_is_one_word_per_item(run: Try) -> None:
    items = [run.hostile(t) for t in ("a b", "$(touch {pwned})", "*", "", "x; touch {pwned}")]
    assert run("words", value=items).succeeded
    assert run.written() == "".join(f"[{item}]" for item in items)
    assert run("in_a_loop", value=items).succeeded
    assert run.written() == "".join(f"[{item}]" for item in items)


def test_join_makes_one_word(run: Try) -> None:
    items = ["a b", run.hostile("$(touch {pwned})")]
    assert run("joined", value=items).succeeded
    assert run.written() == f"[a b {items[1]}]"


def test_numbers_bools_and_none_are_their_text(run: Try) -> None:
    for value, text in [
        (3, "3"),
        (2.5, "2.5"),
        (True, "True"),
        (None, "None"),
        ({"k": 1}, "{'k': 1}"),
    ]:
        assert run("conf_value", value=value).succeeded
        assert run.written() == text


def test_a_value_joined_to_literal_text_stays_one_word(run: Try) -> None:
    value = run.hostile("name with spaces; touch {pwned}")
    assert run("next_to_text", value=value).succeeded
    assert run.written() == f"{run.out.parent}/{value}"


def test_the_opt_out_pastes_the_author_s_fragment_as_shell_code(run: Try) -> None:
    assert run("raw", value="-a  -b").succeeded
    assert run.written() == "[-a][-b]"


@pytest.mark.parametrize(
    ("task_id", "conf", "where"),
    [
        ("conf_value", {"value": "a\0; touch {pwned}"}, "conf['value']"),
        ("param_value", {"other": 1}, "params['value']"),
        ("words", {"value": ["fine", "nested\0nul"]}, "conf['value'][1]"),
    ],
)
def test_a_nul_byte_fails_the_try_naming_the_value(
    run: Try, task_id: str, conf: dict[str, Any], where: str
) -> None:
    conf = {key: run.hostile(v) if isinstance(v, str) else v for key, v in conf.items()}
    outcome = run(task_id, conf=conf, value="b\0c")
    assert not outcome.succeeded
    assert where in (outcome.error or "")
    assert "NUL" in (outcome.error or "")
    assert not run.out.exists()


def test_a_nul_byte_in_an_env_value_fails_the_try_naming_it(run: Try) -> None:
    outcome = run("conf_value", conf={"value": "fine"}, out=f"{run.out}\0x")
    assert not outcome.succeeded
    assert "env['OUT']" in (outcome.error or "") and "params['out']" in (outcome.error or "")
    assert not run.out.exists()


def test_a_command_over_the_kernel_s_argument_limit_fails_with_advice(run: Try) -> None:
    outcome = run("conf_value", value="x" * 200_000)
    assert not outcome.succeeded
    error = outcome.error or ""
    assert "command of task 'conf_value'" in error and "200" in error and "limit" in error, error
    assert not run.out.exists()
