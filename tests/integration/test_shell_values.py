"""Run conf and params reach a Shell command as data, never as shell code: real tries, real bash.

Each test runs one try end to end (forked child, bash) whose command prints a hostile value
into a file; the file must hold exactly the value, and the side effect the value asks for
(creating a `pwned` file) must not have happened. drayman passes every value to bash as an
argument (`bash -c SCRIPT drayman VALUE...`), the script copies its arguments into an array
first and refers to a value as `"${__drayman_values[0]}"`, so no value's text is ever parsed as
shell code, wherever the template puts it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
    Shell("in_double_quotes", 'printf %s "{{ conf.value }}" > "$OUT"', env=OUT)
    Shell("in_cwd", 'pwd > "$OUT"', env=OUT, cwd="{{ conf.value }}")
    Shell("in_a_heredoc", 'cat > "$OUT" <<EOF\n{{ conf.value }}\nEOF\n', env=OUT)
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
    "x\nEOF\ntouch {pwned}\n",
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

    def __init__(self, bundle: Path, tmp: Path, dag_id: str = "quoting") -> None:
        self.bundle = bundle
        self.dag_id = dag_id
        self.logs = tmp / "logs"
        self.out = tmp / "out.txt"
        self.pwned = tmp / "pwned"
        self.count = 0
        self.log = tmp / "no-try-yet.log"

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
            dag_id=self.dag_id,
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
            fileloc=f"dags/{self.dag_id}.py",
            run=run,
            log_path=log_relpath(self.dag_id, run.run_id, task_id, -1, self.count),
        )
        self.log = self.logs / workload.log_path
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


@pytest.mark.parametrize(
    ("task_id", "suffix"),
    [
        ("conf_value", ""),
        ("param_value", ""),
        ("in_a_pipe", ""),
        ("in_double_quotes", ""),
        ("in_a_heredoc", "\n"),
    ],
)
@pytest.mark.parametrize("template", HOSTILE, ids=lambda t: repr(t[:24]))
def test_a_hostile_value_reaches_the_command_as_its_literal_text(
    run: Try, task_id: str, suffix: str, template: str
) -> None:
    value = run.hostile(template)
    outcome = run(task_id, value=value)
    assert outcome.succeeded, outcome.error
    assert run.written() == value + suffix


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


def test_the_log_line_shows_the_script_then_each_argument_escaped(run: Try) -> None:
    value = "x\n[drayman] forged line\r\x1b[2J 'q'"
    assert run("conf_value", value=value).succeeded
    lines = [line for line in run.log.read_text().splitlines() if "forged" in line]
    assert len(lines) == 1, lines
    assert lines[0].endswith(
        """[drayman] bash -c '__drayman_values=("$@"); printf %s "${__drayman_values[0]}" """
        """> "$OUT"' drayman $'x\\n[drayman] forged line"""
        """\\r\\x1b[2J \\'q\\''"""
    ), lines[0]


@pytest.mark.parametrize("cwd", ["/tmp", "..", "dags/../..", "../v1"])
def test_a_cwd_outside_the_bundle_fails_the_try(run: Try, cwd: str) -> None:
    outcome = run("in_cwd", value=cwd)
    assert not outcome.succeeded
    assert f"cwd of task 'in_cwd' renders to {cwd!r}, which is outside the bundle" in (
        outcome.error or ""
    )
    assert not run.out.exists()


def test_a_cwd_inside_the_bundle_is_where_the_command_runs(run: Try) -> None:
    assert run("in_cwd", value="dags").succeeded
    assert run.written() == f"{run.bundle / 'dags'}\n"


def test_a_command_over_the_kernel_s_argument_limit_fails_with_advice(run: Try) -> None:
    outcome = run("conf_value", value="x" * 200_000)
    assert not outcome.succeeded
    error = outcome.error or ""
    assert "command of task 'conf_value'" in error and "200" in error and "limit" in error, error
    assert not run.out.exists()


# ------------------------------------------- one DAG file per command, as an author writes it


@pytest.fixture
def one(tmp_path: Path) -> Iterator[Callable[[str], Try]]:
    """Writes a DAG file whose task "t" runs `command` (env OUT: the output file)."""
    made: list[Try] = []

    def make(command: str) -> Try:
        root = tmp_path / f"bundle{len(made)}"
        (root / "dags").mkdir(parents=True)
        (root / "dags" / "one.py").write_text(
            "from drayman import DAG, Shell\n"
            'with DAG("one", timezone="UTC", params={"n": 1}):\n'
            f'    Shell("t", {command!r}, env={{"OUT": "{{{{ params.out }}}}"}})\n'
        )
        attempt = Try(root, tmp_path, dag_id="one")
        made.append(attempt)
        return attempt

    yield make
    for attempt in made:
        assert not attempt.pwned.exists(), "a value ran as shell code"
    unload_all()


INJECTION = "$(touch {pwned})"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        # command substitutions and ${...} inside the author's double quotes
        ('v="$(basename "{{ conf.value }}")"; printf %s "$v" > "$OUT"', "pwned)"),
        ('printf %s "${X:-"{{ conf.value }}"}" > "$OUT"', "{value}"),
        ('printf %s "`printf %s "{{ conf.value }}"`" > "$OUT"', "{value}"),
        # here-documents: a comment after the operator, a tab-indented delimiter
        ('cat <<EOF > "$OUT" # c\nday={{ conf.value }}\nEOF', "day={value}\n"),
        ('cat <<-EOF > "$OUT"\n\tday={{ conf.value }}\n\tEOF\n', "day={value}\n"),
        # a macro's output, placed by a call block inside double quotes
        (
            "{% macro q(v) %}{{ v }}{{ caller() }}{% endmacro %}"
            'printf %s "{% call q(conf.value) %}{% endcall %}" > "$OUT"',
            "{value}",
        ),
    ],
)
def test_a_value_in_quotes_or_a_heredoc_is_never_run(
    one: Callable[[str], Try], command: str, expected: str
) -> None:
    run = one(command)
    value = run.hostile(INJECTION)
    outcome = run("t", value=value)
    assert outcome.succeeded, outcome.error
    assert run.written() == expected.replace("{value}", value)


# Bash evaluates these positions as arithmetic or as a variable name, even for the value of a
# quoted variable, and an array subscript there runs `$( )`: such a value fails the try.
ARITHMETIC = [
    "echo $[ {{ conf.value }} + 1 ]",
    "a=([{{ conf.value }}]=1)",
    "if let {{ conf.value }}; then :; fi",
    "declare -i n; n={{ conf.value }}",
    "[[ -n x &&\n {{ conf.value }} -eq 1 ]]",
    "echo $(( {{ conf.value or params.n | int }} ))",
    "printf -v {{ conf.value }} %s 1",
    "read {{ conf.value }} <<< 1",
    "test -v {{ conf.value }}",
    "echo $(( {{ conf.value }} ))",
    '[[ "{{ conf.value }}" -eq 0 ]]',
]


@pytest.mark.parametrize("command", ARITHMETIC)
@pytest.mark.parametrize(
    "template", ["a[$(touch {pwned})]", "a[${x[$(touch {pwned})]}]", "x[`touch {pwned}`]"]
)
def test_a_value_that_arithmetic_would_run_fails_the_try(
    one: Callable[[str], Try], command: str, template: str
) -> None:
    run = one(command)
    outcome = run("t", value=run.hostile(template))
    assert not outcome.succeeded
    error = outcome.error or ""
    assert "conf['value']" in error and "arithmetic" in error, error


@pytest.mark.parametrize("value", ["a[1]", "$(y) [x]", "7", "x$(y)"])
def test_a_value_without_a_subscripted_substitution_may_reach_arithmetic(
    one: Callable[[str], Try], value: str
) -> None:
    run = one('printf %s {{ conf.value }} > "$OUT"')
    assert run("t", value=value).succeeded
    assert run.written() == value


# What Airflow users write every day: values inside their own double quotes, a here-document.
@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ('echo "{{ ds }}" > "$OUT"', "2026-01-02\n"),
        ('printf "%s|" --date "{{ ds }}" > "$OUT"', "--date|2026-01-02|"),
        ('printf %s "s3://b/{{ ds_nodash }}/x.csv" > "$OUT"', "s3://b/20260102/x.csv"),
        ('cat > "$OUT" <<EOF\nday: {{ ds }} ({{ dag_id }})\nEOF\n', "day: 2026-01-02 (one)\n"),
        ('echo "run {{ run_id }}" > "$OUT"', "run manual__2026-01-02T03:00:00+00:00\n"),
    ],
)
def test_airflow_idioms_give_their_literal_text(
    one: Callable[[str], Try], command: str, expected: str
) -> None:
    run = one(command)
    outcome = run("t", value=None, conf={})
    assert outcome.succeeded, outcome.error
    assert run.written() == expected


# Bash expands a subscript the command itself writes around a value once more, so there a
# value with `$(` runs even without a `[` of its own: such a value fails the try.
@pytest.mark.parametrize(
    "command",
    [
        "a=([{{ conf.value }}]=1)",
        'a+=(["{{ conf.value }}"]=1)',
        'printf -v "a[{{ conf.value }}]" x',
        'read "a[{{ conf.value }}]" <<< x',
        'test -v "a[{{ conf.value }}]"',
        'declare "a[{{ conf.value }}]=x"',
        'let "a[{{ conf.value }}]=1"',
    ],
)
def test_a_command_in_a_value_inside_a_subscript_fails_the_try(
    one: Callable[[str], Try], command: str
) -> None:
    run = one(command)
    outcome = run("t", value=run.hostile(INJECTION))
    assert not outcome.succeeded
    error = outcome.error or ""
    assert "conf['value']" in error and "holds `$(`, `${` or a backtick and lands inside" in error


# A value keeps its meaning where bash's positional parameters change: inside a function the
# command defines, after `set --` or `shift`. Airflow users write functions in a command.
@pytest.mark.parametrize(
    ("command", "value", "expected"),
    [
        ('f() { printf %s "{{ conf.value }}" > "$OUT"; }; f other', "v", "v"),
        ('f() { printf %s {{ conf.value }} > "$OUT"; }; f', "v", "v"),
        ('set -- a b; printf %s {{ conf.value }} > "$OUT"', "v", "v"),
        ('shift; printf %s "{{ conf.value }}" > "$OUT"', "v", "v"),
        ('f() { printf "[%s]" {{ conf.value }} > "$OUT"; }; f x y', ["a b", "c"], "[a b][c]"),
        ('set --; printf "[%s]" "{{ conf.value }}" > "$OUT"', ["a b", "c"], "[a b c]"),
        ('cat > "$OUT" <<EOF\n$(set -- z; echo {{ conf.value }})\nEOF\n', "v", "v\n"),
    ],
)
def test_a_value_keeps_its_meaning_in_a_function_and_after_set_or_shift(
    one: Callable[[str], Try], command: str, value: Any, expected: str
) -> None:
    run = one(command)
    outcome = run("t", value=value)
    assert outcome.succeeded, outcome.error
    assert run.written() == expected


# The array's copy shares the script's first line: whatever the author's first line is, the
# command runs as written, and bash's `line N:` in an error is the author's line N.
@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ('# a comment\nprintf %s {{ conf.value }} > "$OUT"', "v"),
        ('#!/bin/bash\nprintf %s "$LINENO:{{ conf.value }}" > "$OUT"', "2:v"),
        ('set -euo pipefail; printf "[%s]" {{ conf.value }} x > "$OUT"', "[v][x]"),
        ('f() { printf %s "{{ conf.value }}" > "$OUT"; }\nf', "v"),
        ('cat <<EOF > "$OUT"\n{{ conf.value }}\nEOF\n', "v\n"),
        ('{ printf %s {{ conf.value }}; } > "$OUT"', "v"),
        ('\nprintf %s "{{ conf.value }}" > "$OUT"', "v"),
        ('printf %s "$0" > "$OUT"', "drayman"),
    ],
)
def test_the_author_s_first_line_runs_as_written(
    one: Callable[[str], Try], command: str, expected: str
) -> None:
    run = one(command)
    outcome = run("t", value="v")
    assert outcome.succeeded, outcome.error
    assert run.written() == expected


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ('set -u; printf "[%s]" {{ conf.value }} > "$OUT"', "[]"),
        ('set -u; printf "[%s]" "{{ conf.value }}" "{{ conf.value }}" > "$OUT"', "[][]"),
        ('set -u\ncat > "$OUT" <<EOF\n[{{ conf.value }}]\nEOF\n', "[]\n"),
    ],
)
def test_an_empty_list_under_set_u_is_no_word_or_empty_text(
    one: Callable[[str], Try], command: str, expected: str
) -> None:
    run = one(command)
    outcome = run("t", value=[])  # no arguments at all: the array is empty, not unset
    assert outcome.succeeded, outcome.error
    assert run.written() == expected


def test_an_error_names_the_author_s_line(one: Callable[[str], Try]) -> None:
    run = one('printf %s {{ conf.value }} > "$OUT"\nno_such_command_here')
    outcome = run("t", value="v")
    assert not outcome.succeeded
    assert "drayman: line 2: no_such_command_here: command not found" in run.log.read_text()
