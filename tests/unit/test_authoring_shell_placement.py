"""Shell commands: a value placed where quoting cannot keep it one word fails at parse time."""

from __future__ import annotations

import pytest

from drayman import DAG, Shell
from drayman.authoring.templating import command_error
from drayman.exceptions import DagDefinitionError


@pytest.mark.parametrize(
    ("template", "context"),
    [
        ("echo '{{ ds }}'", "'...' quotes"),
        ("echo 'day {{ ds }} ok'", "'...' quotes"),
        ('echo "{{ ds }}"', '"..." quotes'),
        ('echo "$(cat {{ ds }})"', '"..." quotes'),
        ("echo $'{{ ds }}'", "$'...' quotes"),
        ("echo `cat {{ ds }}`", "`...` backticks"),
        ("echo \\{{ ds }}", "a backslash escape"),
        ("echo ${{ ds }}", "`${{ x }}`"),
        ("echo $(( {{ conf.n }} + 1 ))", "arithmetic"),
        ("(( {{ conf.n }} > 1 )) && x", "arithmetic"),
        ("[[ {{ conf.n }} -eq 1 ]] && x", "arithmetic"),
        ("if [[ 1 -lt {{ conf.n }} ]]; then x; fi", "arithmetic"),
        ("let n={{ conf.n }}+1", "arithmetic"),
        ("x; declare -i n={{ conf.n }}", "arithmetic"),
        ("local -r -i n={{ conf.n }}", "arithmetic"),
        ("a[{{ conf.n }}]=1", "arithmetic"),
        ("echo ${a[{{ conf.n }}]}", "a ${...} expansion"),
        ("echo ${x:{{ conf.n }}}", "a ${...} expansion"),
        ("true # {{ ds }}", "a shell comment"),
        ("cat <<EOF\n{{ ds }}\nEOF", "a here-document"),
        ("cat <<'EOF' > f\nday {{ ds }}\nEOF\n", "a here-document"),
        ("cat <<-EOF\n\tEOFX\n{{ ds }}\n\tEOF", "a here-document"),
        ("echo '{% if true %}{{ ds }}{% endif %}'", "'...' quotes"),
        ("x {% raw %}'{% endraw %}{{ ds }}'", "'...' quotes"),
    ],
)
def test_a_value_inside_quotes_or_other_contexts_is_refused(template: str, context: str) -> None:
    problem = command_error(template)
    assert problem is not None and f"is inside {context}" in problem
    advice = "make it a number" if context.startswith(("arithmetic", "a ${")) else "write it"
    assert advice in problem


@pytest.mark.parametrize(
    "template",
    [
        "echo 'a' {{ ds }} 'b'",
        'ls "$DIR/"{{ ds }}"/x"',
        'echo "it\'s" {{ ds }}',
        "echo don\\'t {{ ds }}",
        "# don't\necho {{ ds }}",
        "echo {{ ds }}#tag",
        "echo a\\\\{{ ds }}",
        "cat <<EOF\nday\nEOF\necho {{ ds }}",
        "cat <<< {{ ds }}",
        "echo $(( {{ conf.n | int }} + 1 )) $(( {{ conf.f | float(0) }} ))",
        "echo $(( (1 + 2) * 3 )) {{ ds }}",
        "echo ${x:-a} ${y#{z}} {{ ds }}",
        "[[ -n {{ ds }} ]] && [[ {{ ds }} == 2026* ]]",
        "[[ 1 -eq 1 ]]; echo {{ ds }}",
        "echo let {{ ds }}; outlet {{ ds }}",
        "declare -r x={{ ds }}",
        "[[ {{ conf.n | int }} -gt 3 ]] && echo ${a[{{ conf.n | int }}]}",
        "echo '{{ conf.v | unsafe_raw_shell }}'",
        'echo {{ "\'" }} {{ ds }}',
        "{% if conf.x %}'quoted'{% endif %} {{ ds }}",
    ],
)
def test_values_in_plain_words_are_accepted(template: str) -> None:
    assert command_error(template) is None


def test_a_dag_file_with_a_quoted_value_fails_at_parse_time_with_its_line() -> None:
    with pytest.raises(DagDefinitionError) as caught, DAG("d"):
        Shell("s", "echo ok\necho 'hello {{ params.who }}'")
    message = str(caught.value)
    assert "test_authoring_shell_placement.py:" in message
    assert "task 's': template in command: line 2:" in message
    assert "{{ params.who }} is inside '...' quotes" in message


def test_a_nul_byte_in_a_template_is_refused_at_parse_time() -> None:
    with pytest.raises(DagDefinitionError, match="command holds a NUL byte"), DAG("d"):
        Shell("s", "echo \0")
