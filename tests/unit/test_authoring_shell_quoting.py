"""Shell commands: every `{{ }}` value is quoted shell words; literal text stays shell syntax."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
from jinja2.sandbox import SecurityError
from test_authoring_templating import make_ctx

from drayman import DAG, Shell
from drayman.authoring.templating import render, render_command
from drayman.exceptions import ParamsError

HOSTILE = "a'b\"c; touch pwned $(id) `id` && * ~ $HOME \\ \n\t|>"


def command(template: str, **conf: Any) -> str:
    return render_command(template, make_ctx(conf=conf))


@pytest.mark.parametrize(
    "value",
    [HOSTILE, "", " ", "'", '"', "\\", "{{ 7*7 }}", "-n", "#x", "x" * 5000, "ü ✓ \u202e"],
)
def test_a_string_is_exactly_one_word(value: str) -> None:
    assert shlex.split(command("printf %s {{ conf.v }}", v=value)) == ["printf", "%s", value]


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
    assert shlex.split(command("cmd {{ conf.v }}", v=value)) == ["cmd", *words]


def test_literal_text_stays_shell_syntax() -> None:
    template = "a {{ conf.v }} | b > \"$OUT\" && c 'lit eral' 2>&1; d # note"
    assert command(template, v="x y") == "a 'x y' | b > \"$OUT\" && c 'lit eral' 2>&1; d # note"


def test_join_filter_makes_one_word_and_a_for_loop_quotes_each_output() -> None:
    assert command("cmd {{ conf.v | join(',') }}", v=["a b", "c"]) == "cmd 'a b,c'"
    assert command("cmd {% for x in conf.v %}--f {{ x }} {% endfor %}", v=["a b", "$x"]) == (
        "cmd --f 'a b' --f '$x' "
    )
    # Jinja string literals are values too: shell syntax belongs in the literal text
    assert command("a {{ '|' }} b") == "a '|' b"


def test_values_are_joined_to_adjacent_text_as_one_word() -> None:
    words = shlex.split(command('ls "$DIR/"{{ conf.v }}.csv', v="x y;z"))
    assert words == ["ls", "$DIR/x y;z.csv"]


def test_the_opt_out_pastes_shell_code() -> None:
    assert command("ls {{ conf.v | unsafe_raw_shell }}", v="-l -a | wc") == "ls -l -a | wc"
    assert command("ls {{ conf.v | unsafe_raw_shell }}", v=["-l", "-a"]) == "ls -l -a"


def test_safe_and_string_operations_do_not_opt_out() -> None:
    assert command("x {{ conf.v | safe }}", v="a b") == "x 'a b'"
    assert command("x {{ (conf.v | unsafe_raw_shell).upper() }}", v="a b") == "x 'A B'"
    assert command("x {{ (conf.v | unsafe_raw_shell) ~ 'c' }}", v="a b") == "x 'a bc'"


def test_the_command_environment_is_still_the_sandbox() -> None:
    with pytest.raises(SecurityError):
        command("{{ ''.__class__.__mro__ }}")


def test_env_and_cwd_values_are_plain_text() -> None:
    assert render("{{ conf.v }}", make_ctx(conf={"v": "a b'c"})) == "a b'c"
    with DAG("d"):
        shell = Shell("s", "run {{ conf.v }}", env={"V": "{{ conf.v }}"}, cwd="/d/{{ conf.v }}")
    assert shell.render(make_ctx(conf={"v": "a b"})) == ("run 'a b'", {"V": "a b"}, "/d/a b")


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


def test_a_nul_byte_in_env_or_cwd_is_refused_naming_both_ends() -> None:
    with DAG("d"):
        shell = Shell("s", "true", env={"OUT": "{{ params.out }}"}, cwd="{{ conf.dir }}")
    with pytest.raises(ParamsError, match=r"env\['OUT'\] of task 'extract': params\['out'\]"):
        shell.render(make_ctx(params={"out": "a\0"}, conf={"dir": "d"}))
    with pytest.raises(ParamsError, match=r"cwd of task 'extract': conf\['dir'\] holds a NUL"):
        shell.render(make_ctx(params={"out": "a"}, conf={"dir": "\0"}))
