"""Which run ids a manual run may take. Pure: the CLI, the pages and the API all reach it
through `run_creation.trigger`.

A run id appears in URLs, log folder names and the unique key the scheduler relies on: the
ids `scheduled__<date>` and `backfill__<date>` are the scheduler's own (a manual run that
took one would stop the scheduled run of that date from being made), and an id must be safe
as one path segment. So a manual run id is 1 to 250 characters (the column's length) of
letters, digits and `_ . : + -`, does not start with a dot, holds no `..`, and does not start
with a reserved prefix, in any case: MariaDB's default collation compares ids
case-insensitively, so `SCHEDULED__<date>` would take the key of that date's scheduled run.
(Binary collations for the id columns on MySQL would be the root fix: a schema change for
later.)
"""

from __future__ import annotations

import re

from drayman.exceptions import RunIdError

MAX_RUN_ID = 250  # the length of dag_run.run_id (store.schema.ID)
RESERVED_PREFIXES: tuple[str, ...] = ("scheduled__", "backfill__")
ALLOWED = "A-Za-z0-9_.:+\\-"
PATTERN = f"^[{ALLOWED}]+$"  # what the API's OpenAPI document says, for clients

_OUTSIDE = re.compile(f"[^{ALLOWED}]")


def check_manual_run_id(run_id: str) -> None:
    """Raise RunIdError saying what is wrong with `run_id` and what to do, if anything is."""
    if not run_id:
        raise RunIdError("run id: must not be empty; leave it out to get manual__<time>")
    if len(run_id) > MAX_RUN_ID:
        raise RunIdError(
            f"run id: {len(run_id)} characters, over the limit of {MAX_RUN_ID}: use a shorter one"
        )
    bad = _OUTSIDE.search(run_id)
    if bad:
        raise RunIdError(
            f"run id: {_describe(bad.group())} at position {bad.start()} is not allowed; "
            "use letters, digits and _ . : + - only"
        )
    if run_id.startswith(".") or ".." in run_id:
        raise RunIdError(
            f"run id {run_id!r}: may not start with '.' or hold '..' (it names a log folder)"
        )
    for prefix in RESERVED_PREFIXES:
        if run_id.lower().startswith(prefix):
            raise RunIdError(
                f"run id {run_id!r}: the prefix {prefix!r} is reserved for the scheduler's own "
                "runs; choose another id (e.g. manual__...)"
            )


def _describe(character: str) -> str:
    if character == "/":
        return "'/'"
    if character.isprintable() and not character.isspace():
        return repr(character)
    return f"the character U+{ord(character):04X}"
