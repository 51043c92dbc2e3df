"""Shell tasks with templated commands: the DAG's schedule, params and run conf reach the
command through Jinja (rendered in a sandbox: conf values are data, never code).

Every `{{ }}` value in a command reaches bash as an argument, never as script text, so a
greeting of `hi; rm -rf ~` is printed, not run, with or without quotes around it."""

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
    # $OUT: the run conf's "out" if given, else a folder under DRAYMAN_HOME
    out = '"${OUT:-$DRAYMAN_HOME/example_data/shell}/$DAY"'
    day_env = {"OUT": "{{ conf.get('out', '') }}", "DAY": "{{ ds_nodash }}"}
    prepare = Shell(
        "prepare",
        f'mkdir -p {out} && echo "{{{{ params.greeting }}}} from {{{{ ds }}}}" > {out}/note.txt',
        env=day_env,
    )
    count = Shell("count", f"wc -c {out}/note.txt", env=day_env)
    prepare >> count
