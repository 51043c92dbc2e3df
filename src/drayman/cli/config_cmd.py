"""`drayman config`: the effective settings and where each came from."""

from __future__ import annotations

import click

from drayman.cli.common import json_option, load_settings, print_json, print_table


@click.command("config")
@json_option
def config(as_json: bool) -> None:
    """Show the effective settings and where each came from (env, file, flag or default)."""
    rows = load_settings().describe()
    if as_json:
        print_json([{"key": k, "value": v, "source": s} for k, v, s in rows])
        return
    print_table(["setting", "value", "source"], rows)
