from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from drayman.config import SECRET_ENV_VARS, Settings, hide_secrets
from drayman.exceptions import BundleError, ConfigError
from drayman.runner.isolation import can_reach_database, resolve_run_as, settings_for_workers
from drayman.runner.worker import Worker


def test_hide_secrets_removes_every_secret_and_nothing_else() -> None:
    environ = {name: "x" for name in SECRET_ENV_VARS}
    environ |= {"DRAYMAN_HOME": "/srv/drayman", "PATH": "/usr/bin"}

    hide_secrets(environ)

    assert environ == {"DRAYMAN_HOME": "/srv/drayman", "PATH": "/usr/bin"}
    assert set(SECRET_ENV_VARS) == {
        "DRAYMAN_DATABASE_URL",
        "DRAYMAN_BROKER_URL",
        "DRAYMAN_SECRET_KEY",
    }


def test_no_run_as_user_means_no_switch() -> None:
    assert resolve_run_as("") is None
    assert Settings.load(environ={}).run_as_user == ""


def test_running_as_that_user_already_means_no_switch() -> None:
    if os.geteuid() == 0:
        pytest.skip("root is refused as a run_as_user (next tests)")
    assert resolve_run_as(pwd.getpwuid(os.geteuid()).pw_name) is None


def test_root_switches_to_the_user_it_looked_up_once() -> None:
    if os.geteuid() != 0:
        pytest.skip("only root may switch")
    nobody = pwd.getpwnam("nobody")
    run_as = resolve_run_as("nobody")
    assert run_as is not None
    assert (run_as.name, run_as.uid, run_as.gid) == ("nobody", nobody.pw_uid, nobody.pw_gid)


def test_an_unknown_user_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="run_as_user 'no-such-user-x9': no such user"):
        resolve_run_as("no-such-user-x9")


def test_root_is_refused() -> None:
    with pytest.raises(ConfigError, match="is root"):
        resolve_run_as("root")


@pytest.mark.parametrize("name", ["-rf", "a b", "../x", "a:b"])
def test_a_malformed_user_name_names_the_setting(name: str) -> None:
    with pytest.raises(ConfigError, match="DRAYMAN_RUN_AS_USER"):
        Settings.load(environ={"DRAYMAN_RUN_AS_USER": name})


def test_only_root_may_switch_to_another_user() -> None:
    if os.geteuid() == 0:
        pytest.skip("as root every switch is allowed; this checks the refusal for others")
    with pytest.raises(ConfigError, match="only root may switch"):
        resolve_run_as("nobody")


def test_workers_get_the_urls_without_passwords(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        database_url="postgresql+psycopg://etl:pw1@db:5432/drayman",
        broker_url="amqp://drayman:pw2@mq:5672//",
        run_as_user="drayman-task",
    )

    theirs = settings_for_workers(settings)

    assert theirs.database_url == "postgresql+psycopg://etl:***@db:5432/drayman"
    assert theirs.broker_url == "amqp://drayman:***@mq:5672//"
    assert theirs.run_as_user == "drayman-task"
    assert not can_reach_database(theirs)
    assert can_reach_database(settings)
    assert settings_for_workers(Settings(home=tmp_path)).effective_database_url == (
        Settings(home=tmp_path).effective_database_url
    )


@pytest.mark.parametrize(
    ("url", "theirs"),
    [
        (
            "postgresql://etl@db/x?password=pw1&sslmode=require",
            "postgresql://etl:***@db/x?sslmode=require",
        ),
        ("postgresql://etl:pa ss@db/x", "postgresql://etl:***@db/x"),
        ("postgresql://etl:pa'ss@db/x", "postgresql://etl:***@db/x"),
        ("postgresql://etl:p/a@ss@db/x", "postgresql://etl:***@db/x"),
        (
            "mysql+pymysql://etl@db/x?PASSWD=pw1&charset=utf8mb4",
            "mysql+pymysql://etl:***@db/x?charset=utf8mb4",
        ),
    ],
)
def test_workers_lose_the_database_password_in_every_form(
    tmp_path: Path, url: str, theirs: str
) -> None:
    settings = settings_for_workers(Settings(home=tmp_path, database_url=url))

    assert settings.database_url == theirs
    assert not can_reach_database(settings)


@pytest.mark.parametrize(
    ("url", "theirs"),
    [
        ("redis://mq:6379/0?password=pw1&x=1", "redis://mq:6379/0?x=1"),
        ("redis://:pa ss@mq:6379/0", "redis://:***@mq:6379/0"),
        ("redis://:pa/ss@mq:6379/0", "redis://:***@mq:6379/0"),
        ("amqp://u:pw1@a//;amqp://u:pw2@b//", "amqp://u:***@a//;amqp://u:***@b//"),
    ],
)
def test_workers_lose_the_broker_password_in_every_form(
    tmp_path: Path, url: str, theirs: str
) -> None:
    assert settings_for_workers(Settings(home=tmp_path, broker_url=url)).broker_url == theirs


def test_a_url_without_a_password_is_reachable_as_it_was(tmp_path: Path) -> None:
    url = "postgresql://etl@db/x?sslmode=require"
    settings = settings_for_workers(Settings(home=tmp_path, database_url=url))
    assert settings.database_url == url
    assert can_reach_database(settings)


def test_a_worker_without_the_password_refuses_to_fetch_a_bundle(tmp_path: Path) -> None:
    """The executor fetches bundles; a worker asked for one it lacks says so, and never
    tries the database with a masked password."""
    settings = settings_for_workers(
        Settings(home=tmp_path, database_url="postgresql+psycopg://etl:pw@127.0.0.1:1/x")
    )
    worker = Worker(conn=None, settings=settings)  # type: ignore[arg-type]

    with pytest.raises(BundleError, match="holds no database password to fetch it"):
        worker._bundle_dir("a" * 64)
