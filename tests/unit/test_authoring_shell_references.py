"""Shell commands: where a value's reference lands picks its form; inside '...' it is refused."""

from __future__ import annotations

import pytest

from drayman import DAG, Shell
from drayman.authoring.shell_references import (
    COMMENT,
    DOUBLE,
    HEREDOC,
    PLAIN,
    QUOTED_HEREDOC,
    SINGLE,
    Scanner,
    reference,
)
from drayman.authoring.templating import command_error
from drayman.exceptions import DagDefinitionError


def context_at_end(text: str) -> str:
    scanner = Scanner()
    scanner.feed(text)
    return scanner.where()


@pytest.mark.parametrize(
    ("text", "context"),
    [
        ("echo ", PLAIN),
        ('echo "a ', DOUBLE),
        ('echo "a" ', PLAIN),
        ("echo 'a ", SINGLE),
        ("echo $'a\\' ", SINGLE),
        ("echo 'a' ", PLAIN),
        ('v="$(basename "', DOUBLE),
        ('v="$(basename ', PLAIN),
        ('v="$(basename "x") ', DOUBLE),
        ('echo "${X:-"', DOUBLE),
        ('echo "${X:-', PLAIN),
        ('echo "`echo "', DOUBLE),
        ('echo "`echo ', PLAIN),
        ('echo "$(( (1) + ', PLAIN),
        ("echo \"it's ", DOUBLE),
        ("echo don\\'t ", PLAIN),
        ("# don't\necho ", PLAIN),
        ("echo # it's ", COMMENT),
        ("echo a#b'c", SINGLE),  # `#` inside a word is not a comment
        ("cat <<EOF\n", HEREDOC),
        ("cat <<EOF > out.txt # c\nday=", HEREDOC),
        ("cat <<EOF\n'x", HEREDOC),  # quotes are literal in a here-document body
        ("cat <<EOF\nx\nEOF\necho ", PLAIN),
        ("cat <<-EOF\n\tx\n\tEOF\necho ", PLAIN),
        ("cat <<-EOF\n\tEOFX\n", HEREDOC),
        ("cat <<'EOF'\n", QUOTED_HEREDOC),
        ('cat <<"EOF"\n', QUOTED_HEREDOC),
        ("cat <<\\EOF\n", QUOTED_HEREDOC),
        ("cat <<E'O'F\n", QUOTED_HEREDOC),
        ("cat <<A <<'B'\na\nA\n", QUOTED_HEREDOC),
        ("cat <<< ", PLAIN),
    ],
)
def test_the_scanner_follows_bash_quoting(text: str, context: str) -> None:
    assert context_at_end(text) == context


@pytest.mark.parametrize(
    ("context", "count", "text"),
    [
        (PLAIN, None, '"${__drayman_values[3]}"'),
        (DOUBLE, None, "${__drayman_values[3]}"),
        (HEREDOC, None, "${__drayman_values[3]}"),
        (COMMENT, None, '"${__drayman_values[3]}"'),
        (PLAIN, 2, '"${__drayman_values[@]:3:2}"'),
        (PLAIN, 0, '"${__drayman_values[@]:3:0}"'),
        (DOUBLE, 2, "${__drayman_values[*]:3:2}"),
        (HEREDOC, 0, "${__drayman_values[*]:3:0}"),
    ],
)
def test_the_form_of_a_reference(context: str, count: int | None, text: str) -> None:
    assert reference(context, 3, count) == text


@pytest.mark.parametrize(
    ("template", "where"),
    [
        ("echo '{{ ds }}'", "'...' quotes"),
        ("echo 'day {{ ds }} ok'", "'...' quotes"),
        ("echo --date '{{ ds }}'", "'...' quotes"),
        ("echo $'{{ ds }}'", "'...' quotes"),
        ("echo '{% if true %}{{ ds }}{% endif %}'", "'...' quotes"),
        ("x {% raw %}'{% endraw %}{{ ds }}'", "'...' quotes"),
        ("cat <<'EOF' > f\nday {{ ds }}\nEOF\n", "a here-document with a quoted delimiter"),
    ],
)
def test_a_value_where_bash_never_expands_is_refused(template: str, where: str) -> None:
    problem = command_error(template)
    assert problem is not None and f"is inside {where}" in problem
    assert "remove those quotes" in problem or "without quotes (<<EOF)" in problem


@pytest.mark.parametrize(
    "template",
    [
        'echo "{{ ds }}"',
        'ls "s3://b/{{ ds_nodash }}/x.csv"',
        'echo "$(cat {{ ds }})" `cat {{ ds }}`',
        "echo \\{{ ds }} ${{ ds }}",
        "echo $(( {{ conf.n }} + 1 )); [[ {{ conf.n }} -eq 1 ]]; let n={{ conf.n }}",
        "true # {{ ds }}",
        "cat <<EOF\n'{{ ds }}'\nEOF",
        "cat <<-EOF\n\tEOFX\n{{ ds }}\n\tEOF",
        "echo '{{ conf.v | unsafe_raw_shell }}'",
        "{% if conf.x %}'quoted'{% endif %} {{ ds }}",
    ],
)
def test_values_anywhere_bash_expands_are_accepted(template: str) -> None:
    assert command_error(template) is None


def test_a_dag_file_with_a_single_quoted_value_fails_at_parse_time_with_its_line() -> None:
    with pytest.raises(DagDefinitionError) as caught, DAG("d"):
        Shell("s", "echo ok\necho 'hello {{ params.who }}'")
    message = str(caught.value)
    assert "test_authoring_shell_references.py:" in message
    assert "task 's': template in command: line 2:" in message
    assert "{{ params.who }} is inside '...' quotes" in message


def test_a_nul_byte_in_a_template_is_refused_at_parse_time() -> None:
    with pytest.raises(DagDefinitionError, match="command holds a NUL byte"), DAG("d"):
        Shell("s", "echo \0")
