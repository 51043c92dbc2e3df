"""Turning exceptions into one clear line on stderr and the exit code that matches."""

from __future__ import annotations

import sys
from typing import Any

import click

from drayman.exceptions import (
    ConfigError,
    ConflictError,
    DagDefinitionError,
    DraymanError,
    NotFoundError,
    ParamsError,
    RunIdError,
)
from drayman.redact import mask_text
from drayman.store.errors import database_errors

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4


def exit_code_for(exc: DraymanError) -> int:
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, ConflictError):
        return EXIT_CONFLICT
    if isinstance(exc, ConfigError | ParamsError | RunIdError | DagDefinitionError):
        return EXIT_BAD_INPUT
    return EXIT_FAILED


def run_with_clear_errors(command: click.Command, argv: list[str] | None) -> Any:
    try:
        return command.main(args=argv, prog_name="drayman", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter):
            # a bad value (--conf, a date) is one line naming the option: usage would bury it
            click.echo(f"error: {exc.format_message()}", err=True)
        else:
            exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except DraymanError as exc:
        click.echo(f"error: {mask_text(str(exc))}", err=True)
        sys.exit(exit_code_for(exc))
    except database_errors() as exc:
        click.echo(f"error: the metadata database failed: {_first_line(exc)}", err=True)
        click.echo("hint: check DRAYMAN_DATABASE_URL and run `drayman db migrate`", err=True)
        sys.exit(EXIT_FAILED)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return mask_text(text[0]) if text else type(exc).__name__


class BadInput(click.UsageError):
    """A malformed argument: exit code 2, and the message names the argument."""
