"""Shell tasks with templated commands: the DAG's schedule, params and run conf reach the
command through Jinja (rendered in a sandbox: conf values are data, never code)."""

from __future__ import annotations

from drayman import DAG, Shell

with DAG(
    "shell_pipeline",
    schedule="15 6 * * 1-5",
    timezone="Australia/Sydney",
    start_date="2026-01-01",
    catchup=False,
    params={"greeting": "hello"},
    tags=["example", "shell"],
):
    prepare = Shell(
        "prepare",
        'mkdir -p "$OUT" && echo \'{{ params.greeting }} from {{ ds }}\' > "$OUT/note.txt"',
        env={"OUT": "{{ conf.get('out', '/tmp/drayman-shell-example') }}/{{ ds_nodash }}"},
    )
    count = Shell(
        "count",
        'wc -c "$OUT/note.txt"',
        env={"OUT": "{{ conf.get('out', '/tmp/drayman-shell-example') }}/{{ ds_nodash }}"},
    )
    prepare >> count
