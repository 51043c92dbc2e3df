"""The secret key that signs session cookies and CSRF tokens: random per installation.

Taken from `DRAYMAN_SECRET_KEY` when set (several web servers behind a balancer must share
one), else from `$DRAYMAN_HOME/secret_key`, which the first start creates with 48 random
bytes and mode 0600. drayman ships no key: a key in a repository is a key everyone has.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from drayman.exceptions import ConfigError

ENV_KEY = "DRAYMAN_SECRET_KEY"
FILE_NAME = "secret_key"
MIN_LENGTH = 32  # characters; token_urlsafe(48) gives 64


def load_secret_key(home: Path, environ: Mapping[str, str]) -> str:
    """The installation's secret key: from the environment, the key file, or a new key file."""
    configured = environ.get(ENV_KEY)
    if configured is not None:
        return _checked(configured.strip(), f"env {ENV_KEY}")
    path = home / FILE_NAME
    if not path.exists():
        _create(path)
    return _read(path)


def _create(path: Path) -> None:
    """Write a new key without a window where it is readable by others, and without two
    processes starting at once each keeping a different key: the first link wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temp, path)
    except FileExistsError:
        pass  # another process made it first: use theirs
    finally:
        temp.unlink(missing_ok=True)


def _read(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{path}: the secret key is readable by other users (mode {mode:04o}); "
            f"run `chmod 600 {path}`"
        )
    return _checked(path.read_text().strip(), str(path))


def _checked(key: str, source: str) -> str:
    if len(key) < MIN_LENGTH:
        raise ConfigError(
            f"{source}: the secret key is too short ({len(key)} characters, need {MIN_LENGTH}); "
            'make one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'
        )
    return key
