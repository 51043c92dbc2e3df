"""The secret key: random per installation, private to its owner, or from the environment."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from drayman.auth.secret import ENV_KEY, load_secret_key
from drayman.exceptions import ConfigError


def test_first_start_creates_a_private_random_key(tmp_path: Path) -> None:
    key = load_secret_key(tmp_path / "home", {})

    path = tmp_path / "home" / "secret_key"
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600, f"secret_key has mode {mode:04o}, want 0600"
    assert len(key) >= 64, f"key of {len(key)} characters is too short"
    assert load_secret_key(tmp_path / "home", {}) == key, "the key changed on the second start"


def test_each_installation_gets_its_own_key(tmp_path: Path) -> None:
    assert load_secret_key(tmp_path / "a", {}) != load_secret_key(tmp_path / "b", {})


def test_the_environment_wins_and_no_file_is_written(tmp_path: Path) -> None:
    key = "k" * 40

    assert load_secret_key(tmp_path, {ENV_KEY: key}) == key
    assert not (tmp_path / "secret_key").exists()


def test_a_short_key_is_refused_with_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"env {ENV_KEY}: the secret key is too short"):
        load_secret_key(tmp_path, {ENV_KEY: "hunter2"})


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    load_secret_key(tmp_path, {})
    os.chmod(tmp_path / "secret_key", 0o644)

    with pytest.raises(ConfigError, match=r"readable by other users .*chmod 600"):
        load_secret_key(tmp_path, {})


def test_starting_many_at_once_agrees_on_one_key(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: load_secret_key(tmp_path, {}), range(16)))

    assert len(keys) == 1, f"concurrent first starts made {len(keys)} different keys"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "secret_key"]
    assert leftovers == [], f"temporary files left behind: {leftovers}"
