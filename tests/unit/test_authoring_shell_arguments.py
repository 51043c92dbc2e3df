"""Shell commands: every `{{ }}` value is an argument of bash the script refers to, never text
of the script; literal template text stays shell syntax."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
from jinja2.sandbox import SecurityError
from test_authoring_templating import make_ctx

from drayman import DAG, Shell
from drayman.authoring.shell_arguments import MAX_ARGUMENT_BYTES, ShellCommand, display_word
from drayman.authoring.templating import render, render_command
from drayman.exceptions import DagDefinitionError, ParamsError

HOSTILE = "a'b\"c; touch pwned $(id) `id` && * ~ $HOME \\ \n\t|>"


def command(template: str, **conf: Any) -> ShellCommand:
    return render_command(template, make_ctx(conf=conf))


def bash_words(shell: ShellCommand) -> list[str]:
    """What the command's words are once bash has expanded them: real bash, one per line."""
    script = 'f() { for w in "$@"; do printf "%s\\0" "$w"; done; }; f ' + shell.script
    out = subprocess.run(ShellCommand(script, shell.args).argv(), capture_output=True, check=True)
    return out.stdout.decode().split("\0")[:-1]


@pytest.mark.parametrize(
    "value",
    [HOSTILE, "", " ", "'", '"', "\\", "{{ 7*7 }}", "-n", "#x", "x" * 5000, "ü ✓ \u202e"],
)
def test_a_string_is_one_argument_the_script_refers_to(value: str) -> None:
    shell = command("printf %s {{ conf.v }}", v=value)
    assert shell == ShellCommand('printf %s "${__drayman_values[0]}"', (value,))
    assert bash_words(shell) == ["printf", "%s", value]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (3, ["3"]),
        (-2.5, ["-2.5"]),
        (True, ["True"]),  # Jinja's text, as env= and Airflow print it
        (None, ["None"]),
        ({"k": "v w"}, ["{'k': 'v w'}"]),
        (["a b", HOSTILE, ""], ["a b", HOSTILE, ""]),
        (("x", 1), ["x", "1"]),
        ([], []),
        ([["a", "b"], "c"], ["['a', 'b']", "c"]),  # a nested list is one word: its text
    ],
)
def test_values_and_lists_become_words(value: object, words: list[str]) -> None:
    assert bash_words(command("cmd {{ conf.v }} end", v=value)) == ["cmd", *words, "end"]


def test_a_list_is_consecutive_arguments() -> None:
    shell = command(
        "cmd {{ conf.a }} {{ conf.l }} {{ conf.e }} {{ conf.b }}", a=1, l=["x", "y"], e=[], b=2
    )
    assert shell == ShellCommand(
        'cmd "${__drayman_values[0]}" "${__drayman_values[@]:1:2}" '
        '"${__drayman_values[@]:3:0}" "${__drayman_values[3]}"',
        ("1", "x", "y", "2"),
    )


def test_inside_double_quotes_a_value_is_expanded_there() -> None:
    shell = command(
        'echo "day {{ conf.v }}: {{ conf.l }}" "s3://b/{{ conf.v }}/x.csv"', v="a  b", l=["c", "d"]
    )
    assert shell == ShellCommand(
        'echo "day ${__drayman_values[0]}: ${__drayman_values[*]:1:2}" '
        '"s3://b/${__drayman_values[3]}/x.csv"',
        ("a  b", "c", "d", "a  b"),
    )
    assert bash_words(shell) == ["echo", "day a  b: c d", "s3://b/a  b/x.csv"]


def test_a_value_used_twice_is_one_argument() -> None:
    shell = command("{% set v = conf.v %}a {{ v }} b {{ v }}", v="x")
    assert shell.args == ("x", "x")  # two outputs, two arguments: each `{{ }}` is its own


def test_literal_text_stays_shell_syntax() -> None:
    template = "a {{ conf.v }} | b > \"$OUT\" && c 'lit eral' 2>&1; d # note"
    assert command(template, v="x y").script == (
        'a "${__drayman_values[0]}" | b > "$OUT" && c \'lit eral\' 2>&1; d # note'
    )


def test_join_filter_makes_one_word_and_a_for_loop_makes_one_per_output() -> None:
    assert bash_words(command("cmd {{ conf.v | join(',') }}", v=["a b", "c"])) == ["cmd", "a b,c"]
    loop = command("cmd {% for x in conf.v %}--f {{ x }} {% endfor %}", v=["a b", "$x"])
    assert bash_words(loop) == ["cmd", "--f", "a b", "--f", "$x"]
    # Jinja string literals are values too: shell syntax belongs in the literal text
    assert bash_words(command("a {{ '|' }} b")) == ["a", "|", "b"]


def test_values_are_joined_to_adjacent_text_as_one_word() -> None:
    assert bash_words(command('ls "$HOME/"{{ conf.v }}.csv', v="x y;z"))[1].endswith("/x y;z.csv")


def test_a_macro_or_block_printed_as_a_value_is_one_argument() -> None:
    shell = command(
        "{% macro m(v) %}--x {{ v }}{% endmacro %}{% set b %}[{{ conf.v }}]{% endset %}"
        "cmd {{ m(conf.v) }} {{ b }} {{ b | unsafe_raw_shell }}",
        v="a b",
    )
    assert bash_words(shell) == ["cmd", "--x a b", "[a b]", "[a b]"]
    assert shell.script == (
        'cmd "${__drayman_values[0]}" "${__drayman_values[1]}" ["${__drayman_values[2]}"]'
    )
    assert shell.args == ("--x a b", "[a b]", "a b")


def test_the_opt_out_pastes_shell_code() -> None:
    assert command("ls {{ conf.v | unsafe_raw_shell }}", v="-l -a | wc") == ShellCommand(
        "ls -l -a | wc"
    )
    assert command("ls {{ conf.v | unsafe_raw_shell }}", v=["-l", "-a"]).script == "ls -l -a"


def test_safe_and_string_operations_do_not_opt_out() -> None:
    assert command("x {{ conf.v | safe }}", v="a b").args == ("a b",)
    assert command("x {{ (conf.v | unsafe_raw_shell).upper() }}", v="a b").args == ("A B",)
    assert command("x {{ (conf.v | unsafe_raw_shell) ~ 'c' }}", v="a b").args == ("a bc",)


def test_the_command_environment_is_still_the_sandbox() -> None:
    with pytest.raises(SecurityError):
        command("{{ ''.__class__.__mro__ }}")


def test_text_that_looks_like_a_marker_is_not_one() -> None:
    # a marker's nonce is new for every render: no template or value can know it
    with pytest.raises(ParamsError, match="NUL byte"):
        command("x {{ '\\0forged:0\\0' | unsafe_raw_shell }}")


def test_a_value_inside_single_quotes_is_refused_even_when_a_macro_puts_it_there() -> None:
    with pytest.raises(DagDefinitionError, match=r"command of task 'extract': .*'\.\.\.' quotes"):
        command(
            "{% macro m(v) %}{{ v }}{% endmacro %}echo '{{ m(conf.v) | unsafe_raw_shell }}'", v="x"
        )


def test_env_and_cwd_values_are_plain_text() -> None:
    assert render("{{ conf.v }}", make_ctx(conf={"v": "a b'c"})) == "a b'c"
    with DAG("d"):
        shell = Shell("s", "run {{ conf.v }}", env={"V": "{{ conf.v }}"}, cwd="d/{{ conf.v }}")
    assert shell.render(make_ctx(conf={"v": "a b"})) == (
        ShellCommand('run "${__drayman_values[0]}"', ("a b",)),
        {"V": "a b"},
        "d/a b",
    )


@pytest.mark.parametrize(
    ("template", "conf", "where"),
    [
        ("x {{ conf.v }}", {"v": "a\0b"}, "conf['v'] holds a NUL byte, which no process can"),
        ("x {{ conf.v }}", {"v": ["ok", "a\0b"]}, "conf['v'][1] holds a NUL byte"),
        ("x {{ conf.v ~ 'y' }}", {"v": "a\0b", "w": "\0"}, "conf['v'] or conf['w'] holds"),
        ("x {{ conf.v | unsafe_raw_shell }}", {"v": "a\0b"}, "conf['v'] holds a NUL byte"),
    ],
)
def test_a_nul_byte_is_refused_naming_where_it_came_from(
    template: str, conf: dict[str, Any], where: str
) -> None:
    prefix = "command of task 'extract': "
    with pytest.raises(ParamsError, match="^" + re.escape(prefix + where)):
        command(template, **conf)


@pytest.mark.parametrize(
    "value", ["a[$(id)]", "x[0] `id`", "[${x}", "a[$((1))]", "a[1] and later ${HOME}"]
)
def test_a_subscript_that_arithmetic_would_run_is_refused_wherever_it_goes(value: str) -> None:
    message = "conf['v'] holds `[` followed by `$(`, `${` or a backtick, which would run a command"
    for template in (
        "x {{ conf.v }}",
        'x "{{ conf.v }}"',
        "x {{ conf.l }}",
        "x {{ conf.v ~ 'y' }}",
    ):
        with pytest.raises(
            ParamsError, match=re.escape(message.replace("conf['v']", ""))
        ) as caught:
            command(template, v=value, l=["ok", value])
        assert "arithmetic" in str(caught.value)
    with pytest.raises(ParamsError, match=r"env\['X'\] of task 'extract': conf\['v'\] holds `\["):
        with DAG("d"):
            shell = Shell("s", "true", env={"X": "{{ conf.v }}"})
        shell.render(make_ctx(conf={"v": value}))


@pytest.mark.parametrize("value", ["a[1]", "$(id) [x]", "${x}[0]", "`id`", "[[ x ]]", "[]"])
def test_brackets_or_substitutions_alone_are_fine(value: str) -> None:
    assert command("x {{ conf.v }}", v=value).args == (value,)


def test_a_value_over_the_limit_for_one_argument_is_refused_naming_it() -> None:
    command("x {{ conf.v }}", v="é" * (MAX_ARGUMENT_BYTES // 2))
    with pytest.raises(ParamsError, match=r"conf\['v'\] \(131072 bytes\) is over .* limit"):
        command("x {{ conf.v }}", v="x" * (MAX_ARGUMENT_BYTES + 1))


def test_a_nul_byte_in_env_or_cwd_is_refused_naming_both_ends() -> None:
    with DAG("d"):
        shell = Shell("s", "true", env={"OUT": "{{ params.out }}"}, cwd="{{ conf.dir }}")
    with pytest.raises(ParamsError, match=r"env\['OUT'\] of task 'extract': params\['out'\]"):
        shell.render(make_ctx(params={"out": "a\0"}, conf={"dir": "d"}))
    with pytest.raises(ParamsError, match=r"cwd of task 'extract': conf\['dir'\] holds a NUL"):
        shell.render(make_ctx(params={"out": "a"}, conf={"dir": "\0"}))


@pytest.mark.parametrize("cwd", ["/srv", "..", "a/../../b", "a/.."])
def test_a_cwd_outside_the_bundle_is_refused(cwd: str) -> None:
    with DAG("d"):
        shell = Shell("s", "true", cwd="{{ conf.dir }}")
    with pytest.raises(ParamsError, match="which is outside the bundle: cwd is a directory"):
        shell.render(make_ctx(conf={"dir": cwd}))
    with pytest.raises(DagDefinitionError, match="is outside the bundle"), DAG("e"):
        Shell("s", "true", cwd=cwd)


@pytest.mark.parametrize(
    ("word", "shown"),
    [
        ("plain", "plain"),
        ("a b'c", "'a b'\"'\"'c'"),
        ("x\n[drayman] forged", "$'x\\n[drayman] forged'"),
        ("it's\t\x1b\r\\", "$'it\\'s\\t\\x1b\\r\\\\'"),
        ("\u202eevil", "$'\\u202eevil'"),
    ],
)
def test_a_word_is_shown_on_one_line_as_bash_would_read_it(word: str, shown: str) -> None:
    assert display_word(word) == shown
    echoed = subprocess.run(["bash", "-c", f"printf %s {shown}"], capture_output=True, check=True)
    assert echoed.stdout.decode() == word


def test_the_display_is_the_whole_command() -> None:
    shell = command('printf %s "{{ conf.v }}"\necho done', v="a\nb")
    assert shell.display() == (
        """bash -c $'__drayman_values=("$@"); printf %s "${__drayman_values[0]}"\\necho done'"""
        """ drayman $'a\\nb'"""
    )


# Every place a template can put a value, crossed with values that try to run `touch pwned`:
# the rendered command either is refused or runs in real bash without running the value.
PLACES = [
    "echo {{ conf.v }}",
    'echo "{{ conf.v }}"',
    'v="$(basename "{{ conf.v }}")"',
    'echo "${X:-"{{ conf.v }}"}" ${X:-{{ conf.v }}} "${X:-{{ conf.v }}}"',
    'echo "`echo "{{ conf.v }}"`" `echo {{ conf.v }}`',
    "cat <<EOF # c\nday={{ conf.v }}\nEOF",
    "cat <<-EOF\n\tday={{ conf.v }}\n\tEOF",
    "cat <<EOF\n$(echo {{ conf.v }}) `echo {{ conf.v }}` '{{ conf.v }}'\nEOF",
    'echo $[ {{ conf.v }} + 1 ] $(( {{ conf.v }} )) "$(( {{ conf.v }} ))"',
    "a=([{{ conf.v }}]=1); echo ${a[{{ conf.v }}]}",
    "let {{ conf.v }}; declare -i n; n={{ conf.v }}",
    "[[ -n x &&\n {{ conf.v }} -eq 1 ]]; (( {{ conf.v }} ))",
    "printf -v {{ conf.v }} %s 1; read {{ conf.v }} <<< 1; test -v {{ conf.v }}",
    "eval echo {{ conf.v | length }}; echo \\{{ conf.v }} ${{ conf.v }}",
    '{% macro q(v) %}{{ v }}{{ caller() }}{% endmacro %}echo "{% call q(conf.v) %}{% endcall %}"',
    "{% set s %}echo {{ conf.v }}{% endset %}{{ s | unsafe_raw_shell }}; echo {{ s }}",
    "echo # {{ conf.v }}\necho {{ conf.v }}#{{ conf.v }}",
    'f() { echo "$1"; }; f {{ conf.v }}; x={{ conf.v }}; echo $x ${x}',
    # subscripts the command writes around a value
    'a+=(["{{ conf.v }}"]=1); printf -v "a[{{ conf.v }}]" x; read "a[{{ conf.v }}]" <<< x',
    'test -v "a[{{ conf.v }}]"; declare "a[{{ conf.v }}]=x"; let "a[{{ conf.v }}]=1"',
    "printf -v 'a['{{ conf.v }}']' x; printf -v a\\[{{ conf.v }}\\] x",
    'printf -v "{{ conf.a }}{{ conf.v }}]" x; printf -v {{ conf.a }}"{{ conf.v }}]" x',
]
VALUES = [
    "$(touch pwned)",
    "`touch pwned`",
    "x; touch pwned",
    "x\ntouch pwned",
    "a[$(touch pwned)]",
    "x[`touch pwned`]",
    "a[${b[$(touch pwned)]}]",
    '"; touch pwned; echo "',
    "'; touch pwned; echo '",
    "x\nEOF\ntouch pwned\nEOF",
    "$'\\x24(touch pwned)'",
]


@pytest.mark.parametrize("place", PLACES)
def test_no_place_runs_a_value(place: str, tmp_path: Any) -> None:
    ran = 0
    for value in VALUES:
        try:
            shell = command(place, v=value, a="a[")
        except (ParamsError, DagDefinitionError):
            continue
        subprocess.run(
            shell.argv(), cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, timeout=10
        )
        ran += 1
        assert not (tmp_path / "pwned").exists(), (place, value, shell)
    assert ran >= 6  # at least every value without `$(`, `${` or a backtick ran


@pytest.mark.parametrize(
    "template",
    [
        "a=([{{ conf.v }}]=1)",
        'printf -v "a[{{ conf.v }}]" x',
        "read a\\[{{ conf.v }}] <<< x",
        "printf -v {{ conf.a }}{{ conf.v }} x",
        'x="$(echo a[{{ conf.v }})"',
    ],
)
def test_a_command_in_a_value_inside_a_subscript_is_refused(template: str) -> None:
    with pytest.raises(ParamsError, match=r"conf\['v'\] holds `\$\(`, `\$\{` or a backtick and"):
        command(template, v="$(id)", a="a[")


@pytest.mark.parametrize(
    "template",
    [
        "printf '[%s]' {{ conf.v }}",
        'printf "[%s]\\n" "{{ conf.v }}"',
        "[[ -n {{ conf.v }} ]] && [ -n {{ conf.v }} ]",
        "ls data[0-9] {{ conf.v }}",
        "x=a[1]; echo {{ conf.v }}",
        "cat <<EOF\n[{{ conf.v }}]\nEOF",
        "echo # [\necho {{ conf.v }}",
    ],
)
def test_a_command_in_a_value_outside_subscripts_is_data(template: str) -> None:
    assert "$(id)" in command(template, v="$(id)").args
