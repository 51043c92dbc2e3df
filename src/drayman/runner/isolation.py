"""What a try may not see: drayman's own secrets, and (with `run_as_user`) drayman's user.

A task is the DAG author's code. It must not learn the metadata database's URL, the broker's
or the web secret key, with which it could rewrite any run or forge a login. Four layers:

- **The environment.** The long-running CLI commands take `SECRET_ENV_VARS` out of their own
  environment once settings are read (`config.hide_secrets`), before any process that runs user code
  is started (the DAG parser, the local executor's forkserver), so those processes and every
  try forked from them never hold the variables, not even in `/proc/<pid>/environ`. Each try
  child removes them again (for `drayman dags test` and other in-process callers).
- **The user.** `/proc/<pid>/environ` of the scheduler or `drayman worker` itself keeps the
  environment it was started with, and its user can read it, and the secret key file. So
  `run_as_user` makes each try (and each task callback) switch to an unprivileged user after
  its log pipes are set up: it can then read neither. This needs drayman to run as root (or
  as that very user, when there is nothing to switch). The DAG parser switches too, and with
  the setting warm workers never import a DAG file: each try's child does, once switched
  (`drayman.runner.execute`). The SQLite database and the logs folder must be closed to
  that user (`refuse_shared_files`).
- **The fds.** A try's child closes every fd of its worker but its own pipes
  (`drayman.runner.process`), and the executor unpickles only its protocol's messages
  (`drayman.runner.unpickler`).
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
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from drayman.config import Settings
from drayman.exceptions import ConfigError
from drayman.redact import MASK, is_secret_key, mask_text
from drayman.store import urls as database_urls


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


LOGS_FOLDER_MODE = 0o750  # drayman's user and group: a try's user reads no log directly


def make_logs_folder(settings: Settings) -> None:
    """Create the logs folder private to drayman's user (and group) when it does not exist."""
    settings.logs_folder.mkdir(mode=LOGS_FOLDER_MODE, parents=True, exist_ok=True)


def refuse_shared_files(settings: Settings, run_as: RunAs) -> None:
    """A `ConfigError` when `run_as`'s user could read the SQLite database (password hashes,
    every run's conf) or the logs folder (every DAG's logs): then running tries as that user
    would not keep them from a task."""
    from drayman.store.engine import sqlite_path

    groups = set(os.getgrouplist(run_as.name, run_as.gid))
    database = sqlite_path(settings.effective_database_url)
    if database is not None:
        for path in (database, *(database.with_name(database.name + s) for s in ("-wal", "-shm"))):
            if _open_to(path, run_as, groups, read=0o444):
                raise ConfigError(
                    f"the SQLite database file {path} can be read by run_as_user "
                    f"{run_as.name!r} (mode {_mode(path)}): a task could read password hashes "
                    f"and every run's conf; run `chmod 600 {database}*` (drayman creates it "
                    "0600) or unset DRAYMAN_RUN_AS_USER"
                )
    logs = settings.logs_folder
    if _open_to(logs, run_as, groups, read=0o555):
        raise ConfigError(
            f"the logs folder {logs} can be entered by run_as_user {run_as.name!r} (mode "
            f"{_mode(logs)}): a task could read every DAG's logs; run `chmod 750 {logs}` "
            "(drayman creates it so) or unset DRAYMAN_RUN_AS_USER"
        )


def _open_to(path: Path, run_as: RunAs, groups: set[int], *, read: int) -> bool:
    """Whether `run_as` has any of the `read` permission bits (as 0o444 or 0o555) on `path`,
    by the kernel's rule: owner bits if it owns it, else group bits if in its group, else
    other bits. A missing file is open to no one."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    if st.st_uid == run_as.uid:
        bits = st.st_mode & 0o700 & read
    elif st.st_gid in groups:
        bits = st.st_mode & 0o070 & read
    else:
        bits = st.st_mode & 0o007 & read
    return bits != 0


def _mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)[2:].rjust(3, "0")


def settings_for_workers(settings: Settings) -> Settings:
    """The settings a warm worker (and every try forked from it) may hold: the database and
    broker URLs without their passwords, in the user part or in the query string."""
    return replace(
        settings,
        database_url=_database_url_without_password(settings.database_url),
        broker_url=";".join(_url_without_password(u) for u in settings.broker_url.split(";")),
    )


def can_reach_database(settings: Settings) -> bool:
    """False for a warm worker's settings whose database URL lost its password."""
    if not settings.database_url:
        return True
    try:
        return database_urls.password_of(settings.database_url) != MASK
    except ValueError:
        return False


def _database_url_without_password(url: str) -> str:
    """`url` parsed as SQLAlchemy does (so a password with `/` or `@` is found whole), its
    password and credential query keys dropped. A URL that held one keeps `***` as its
    password, the mark `can_reach_database` reads: the credential is gone, not forgotten."""
    if not url:
        return url
    stripped = database_urls.with_password_replaced(url, MASK, is_secret_key)
    if stripped is None:
        return _url_without_password(url)
    return mask_text(stripped)


def _url_without_password(url: str) -> str:
    """A broker URL (one of kombu's `;`-separated failover list) split as urllib does, its
    password replaced by `***` and its credential query keys dropped; `mask_text` then hides
    whatever a password with an unescaped `/`, `?` or `#` left behind."""
    parts = urlsplit(url)
    netloc = parts.netloc
    user, at, host = netloc.rpartition("@")
    if at and ":" in user:
        netloc = f"{user.partition(':')[0]}:{MASK}@{host}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = urlencode([(k, v) for k, v in pairs if not is_secret_key(k)])
    if netloc == parts.netloc and query == urlencode(pairs):
        return mask_text(url)  # nothing to drop: the URL as it was, byte for byte
    return mask_text(urlunsplit(parts._replace(netloc=netloc, query=query)))
