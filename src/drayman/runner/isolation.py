"""What a try may not see: drayman's own secrets, and (with `run_as_user`) drayman's user.

A task is the DAG author's code. It must not learn the metadata database's URL, the broker's
or the web secret key, with which it could rewrite any run or forge a login. Three layers:

- **The environment.** The long-running CLI commands take `SECRET_ENV_VARS` out of their own
  environment once settings are read (`config.hide_secrets`), before any process that runs user code
  is started (the DAG parser, the local executor's forkserver), so those processes and every
  try forked from them never hold the variables, not even in `/proc/<pid>/environ`. Each try
  child removes them again (for `drayman dags test` and other in-process callers).
- **The user.** `/proc/<pid>/environ` of the scheduler or `drayman worker` itself keeps the
  environment it was started with, and its user can read it, and the secret key file. So
  `run_as_user` makes each try (and each task callback) switch to an unprivileged user after
  its log pipes are set up: it can then read neither. This needs drayman to run as root (or
  as that very user, when there is nothing to switch).

- **The memory.** A Python task runs in a fork of a warm worker and can read all of that
  process's memory. So warm workers get `settings_for_workers`: URLs without their passwords.
  The executor puts a bundle in the cache before it sends a try that needs it; a warm worker
  never fetches one itself when its database URL has lost a password.
"""

from __future__ import annotations

import ctypes
import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass, replace

from drayman.config import Settings
from drayman.exceptions import ConfigError
from drayman.redact import MASK, mask_url


@dataclass(frozen=True)
class RunAs:
    """The user a try switches to, looked up once per worker process (not per try)."""

    name: str
    uid: int
    gid: int
    home: str


def resolve_run_as(name: str) -> RunAs | None:
    """The user tries switch to; None when there is nothing to switch (no setting, or drayman
    already runs as that user). A clear `ConfigError` when the switch cannot work."""
    if not name:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(
            f"run_as_user {name!r}: no such user on this host; create it (e.g. `useradd "
            f"--system --no-create-home {name}`) or unset DRAYMAN_RUN_AS_USER"
        ) from None
    if entry.pw_uid == 0:
        raise ConfigError(
            f"run_as_user {name!r} is root: tries would see drayman's secrets; name an "
            "unprivileged user"
        )
    if entry.pw_uid == os.geteuid():
        return None
    if os.geteuid() != 0:
        raise ConfigError(
            f"run_as_user {name!r}: drayman runs as uid {os.geteuid()}, and only root may "
            "switch a try to another user; run drayman as root or unset DRAYMAN_RUN_AS_USER"
        )
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def become(run_as: RunAs) -> None:
    """Switch this process (a try's child, the DAG parser) to `run_as` for good: groups, gid,
    then uid.

    The change of user makes the process non-dumpable: /proc/self would stay root's, and its
    code could not even list its own /proc/self/fd. It is an ordinary process of its user
    afterwards, so it is made dumpable again.
    """
    os.initgroups(run_as.name, run_as.gid)
    os.setgid(run_as.gid)
    os.setuid(run_as.uid)
    os.environ.update(HOME=run_as.home, USER=run_as.name, LOGNAME=run_as.name)
    if _PRCTL is not None:
        _PRCTL(_PR_SET_DUMPABLE, 1)


_PR_SET_DUMPABLE = 4


def _load_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None
    return prctl


_PRCTL = _load_prctl()  # looked up once, in the warm process, not in every forked try


def settings_for_workers(settings: Settings) -> Settings:
    """The settings a warm worker (and every try forked from it) may hold: the database and
    broker URLs without their passwords."""
    return replace(
        settings,
        database_url=mask_url(settings.database_url),
        broker_url=mask_url(settings.broker_url),
    )


def can_reach_database(settings: Settings) -> bool:
    """False for a warm worker's settings whose database URL lost its password."""
    return f":{MASK}@" not in settings.database_url
