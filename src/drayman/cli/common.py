"""What every command needs: settings, the store, and printing tables or JSON."""

from __future__ import annotations

import json
import os
import pwd
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click

from drayman import conf, fleet
from drayman.config import Settings, hide_secrets
from drayman.exceptions import ConfigError
from drayman.redact import mask_url
from drayman.store.audit import Actor
from drayman.store.engine import Store

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


def load_settings(**overrides: Any) -> Settings:
    return Settings.load(**overrides)


def open_store(settings: Settings, *, check_schema: bool = True) -> Store:
    """The store, refusing a database whose schema is behind this drayman."""
    store = Store(settings.effective_database_url)
    if check_schema:
        from drayman.store import migrate

        current, head = migrate.current_revision(store), migrate.head_revision()
        if current != head:
            state = "empty" if current is None else f"at revision {current}"
            raise ConfigError(
                f"the database {mask_url(store.url)} is {state}; this drayman needs {head}: "
                "run `drayman db migrate`"
            )
    return store


def prepare_task_environment(settings: Settings) -> None:
    """The environment tasks inherit: the drayman home they run under, and none of drayman's
    secrets (settings are read by now). Also checks `run_as_user` can work, and that its user
    cannot read the SQLite database or the logs, before any try."""
    from drayman.runner.isolation import make_logs_folder, refuse_shared_files, resolve_run_as

    run_as = resolve_run_as(settings.run_as_user)
    make_logs_folder(settings)
    if run_as is not None:
        refuse_shared_files(settings, run_as)
    os.environ["DRAYMAN_HOME"] = str(settings.home.resolve())
    hide_secrets(os.environ)


def who() -> str:
    """Who is acting, for triggered_by and deploy records."""
    return f"{os_user()}@{socket.gethostname()}"


def cli_actor() -> Actor:
    """Who acts, for the audit trail: the OS user, from "cli"."""
    return Actor(os_user(), "cli")


def os_user() -> str:
    """The name of the user this process runs as, from the user database by uid. Not
    `getpass.getuser()`: it believes $USER and $LOGNAME, which anyone sets at will
    (`USER=admin drayman dags pause x` would be audited as admin). "uid:N" when the uid has
    no entry (some containers)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid:{os.getuid()}"


iso = fleet.iso


def print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, default=str))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table: readable in a terminal and easy to grep."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    click.echo(line.rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def parse_when(text: str, what: str) -> datetime:
    """An ISO 8601 date or datetime from the command line; naive means UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 date or time (e.g. 2026-03-08 or "
            "2026-03-08T03:00:00-08:00)",
            param_hint=what,
        ) from exc
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        value.astimezone(UTC)  # the store keeps UTC: 9999-12-31T23:00-05:00 has none
    except OverflowError:
        raise click.BadParameter(
            f"{text!r} is outside the dates UTC can hold (years 1 to 9999) once its offset "
            "is applied",
            param_hint=what,
        ) from None
    return value


def parse_conf(text: str | None, settings: Settings) -> dict[str, Any]:
    """`--conf` as a run conf, checked like the pages' and the API's (`drayman.conf`): a bad
    one is one `error: --conf: ...` line and exit code 2."""
    if not text:
        return {}
    return conf.parse_conf(text, conf.ConfLimits.of(settings), where="--conf")


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    return f"{(end - start).total_seconds():.2f}s"
