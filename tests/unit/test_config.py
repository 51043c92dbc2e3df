from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from drayman.conf import ConfLimits, check_conf
from drayman.config import MAX_CONF_DEPTH_LIMIT, Settings
from drayman.exceptions import ConfigError


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default home is relative: never pick up a drayman.toml from the real cwd."""
    monkeypatch.chdir(tmp_path)


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_without_environment_or_file() -> None:
    settings = Settings.load(environ={})

    assert settings == Settings()
    assert settings.executor == "local"
    assert settings.parallelism == 16
    assert settings.home == Path(".drayman")
    assert settings.sources == {}
    assert {source for _, _, source in settings.describe()} == {"default"}


def test_load_reads_the_given_environ_not_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [name for name in os.environ if name.startswith("DRAYMAN_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DRAYMAN_PARALLELISM", "99")

    assert Settings.load(environ={}).parallelism == 16
    assert Settings.load().parallelism == 99


def test_environment_overrides_defaults_and_says_so() -> None:
    settings = Settings.load(
        environ={
            "DRAYMAN_PARALLELISM": "3",
            "DRAYMAN_EXECUTOR": " Celery ",
            "DRAYMAN_HEARTBEAT_TIMEOUT_S": "12.5",
            "DRAYMAN_DAGS_FOLDER": "/srv/dags",
        }
    )

    assert settings.parallelism == 3
    assert settings.executor == "celery"
    assert settings.heartbeat_timeout_s == 12.5
    assert settings.dags_folder == Path("/srv/dags")
    assert settings.sources["parallelism"] == "env DRAYMAN_PARALLELISM"
    assert settings.sources["executor"] == "env DRAYMAN_EXECUTOR"
    assert "scheduler_poll_s" not in settings.sources
    rows = {key: (value, source) for key, value, source in settings.describe()}
    assert rows["parallelism"] == ("3", "env DRAYMAN_PARALLELISM")
    assert rows["scheduler_poll_s"] == ("5.0", "default")


def test_file_named_by_drayman_config(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "etc" / "drayman.toml",
        '[drayman]\nparallelism = 4\ndags_folder = "/srv/dags"\nexecutor = "celery"\n',
    )

    settings = Settings.load(environ={"DRAYMAN_CONFIG": str(path)})

    assert settings.parallelism == 4
    assert settings.dags_folder == Path("/srv/dags")
    assert settings.executor == "celery"
    assert settings.sources["parallelism"] == f"file {path}"


def test_file_without_a_drayman_table(tmp_path: Path) -> None:
    path = write_config(tmp_path / "flat.toml", "parallelism = 2\n")

    assert Settings.load(environ={"DRAYMAN_CONFIG": str(path)}).parallelism == 2


def test_file_in_drayman_home_is_read_by_default(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = write_config(home / "drayman.toml", "[drayman]\nworker_idle_s = 60\n")

    settings = Settings.load(environ={"DRAYMAN_HOME": str(home)})

    assert settings.worker_idle_s == 60.0
    assert settings.home == home
    assert settings.sources["worker_idle_s"] == f"file {path}"
    assert settings.sources["home"] == "env DRAYMAN_HOME"


def test_a_missing_default_file_is_not_an_error(tmp_path: Path) -> None:
    assert Settings.load(environ={"DRAYMAN_HOME": str(tmp_path / "nowhere")}).parallelism == 16


def test_a_missing_file_named_by_drayman_config_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "etc" / "drayman.tmol"

    with pytest.raises(ConfigError, match=f"env DRAYMAN_CONFIG: no config file at {missing}"):
        Settings.load(environ={"DRAYMAN_CONFIG": str(missing)})


def test_environment_beats_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path / "d.toml", "[drayman]\nparallelism = 4\nexecutor = 'celery'\n")

    settings = Settings.load(environ={"DRAYMAN_CONFIG": str(path), "DRAYMAN_PARALLELISM": "6"})

    assert settings.parallelism == 6
    assert settings.sources["parallelism"] == "env DRAYMAN_PARALLELISM"
    assert settings.executor == "celery"  # still from the file
    assert settings.sources["executor"] == f"file {path}"


def test_flags_beat_environment_and_file(tmp_path: Path) -> None:
    path = write_config(tmp_path / "d.toml", "[drayman]\nparallelism = 4\n")

    settings = Settings.load(
        environ={"DRAYMAN_CONFIG": str(path), "DRAYMAN_PARALLELISM": "6"},
        parallelism="9",
        executor=None,  # a flag that was not given
    )

    assert settings.parallelism == 9
    assert settings.sources["parallelism"] == "flag --parallelism"
    assert settings.executor == "local"
    assert "executor" not in settings.sources


def test_a_flag_with_underscores_is_named_with_dashes() -> None:
    settings = Settings.load(environ={}, dags_folder="/x")

    assert settings.sources["dags_folder"] == "flag --dags-folder"


def test_an_unknown_flag_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="flag --parallelizm: unknown setting 'parallelizm'"):
        Settings.load(environ={}, parallelizm=3)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        pytest.param(
            {"DRAYMAN_PARALLELISM": "many"},
            "env DRAYMAN_PARALLELISM: bad value 'many' for parallelism",
            id="not an int",
        ),
        pytest.param(
            {"DRAYMAN_PARALLELISM": "0"},
            "env DRAYMAN_PARALLELISM: bad value '0' for parallelism: must be at least 1",
            id="int below 1",
        ),
        pytest.param(
            {"DRAYMAN_CELERY_MIN_IN_FLIGHT": "-3"},
            "env DRAYMAN_CELERY_MIN_IN_FLIGHT: bad value '-3' for celery_min_in_flight: "
            "must be at least 1",
            id="celery floor below 1",
        ),
        pytest.param(
            {"DRAYMAN_HEARTBEAT_INTERVAL_S": "-1"},
            "env DRAYMAN_HEARTBEAT_INTERVAL_S: bad value '-1' for heartbeat_interval_s",
            id="negative float",
        ),
        pytest.param(
            {"DRAYMAN_MAX_CONF_DEPTH": "1000"},
            "env DRAYMAN_MAX_CONF_DEPTH: bad value '1000' for max_conf_depth: must be at most 100",
            id="conf depth json cannot store",
        ),
        pytest.param(
            {"DRAYMAN_EXECUTOR": "kubernetes"},
            "env DRAYMAN_EXECUTOR: bad value 'kubernetes' for executor: must be 'local' or",
            id="unknown executor",
        ),
        pytest.param(
            {"DRAYMAN_LOG_FORMAT": "jsn"},
            "env DRAYMAN_LOG_FORMAT: bad value 'jsn' for log_format: must be 'text' or 'json'",
            id="unknown log format",
        ),
    ],
)
def test_a_bad_environment_value_names_the_key_and_its_source(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(environ=environ)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param('parallelism = "x"', "bad value 'x' for parallelism", id="string for int"),
        pytest.param("parallelism = 2.5", "bad value 2.5 for parallelism", id="fraction for int"),
        pytest.param("parallelism = true", "bad value True for parallelism", id="bool for int"),
        pytest.param("parse_timeout_s = 0", "bad value 0 for parse_timeout_s", id="zero timeout"),
    ],
)
def test_a_bad_file_value_names_the_key_and_the_file(
    tmp_path: Path, line: str, message: str
) -> None:
    path = write_config(tmp_path / "d.toml", f"[drayman]\n{line}\n")

    with pytest.raises(ConfigError, match=f"file {path}: {message}"):
        Settings.load(environ={"DRAYMAN_CONFIG": str(path)})


def test_log_format_is_normalised() -> None:
    assert Settings.load(environ={"DRAYMAN_LOG_FORMAT": "JSON"}).log_format == "json"


def test_a_whole_number_written_as_a_float_is_accepted(tmp_path: Path) -> None:
    path = write_config(tmp_path / "d.toml", "[drayman]\nparallelism = 4.0\n")

    assert Settings.load(environ={"DRAYMAN_CONFIG": str(path)}).parallelism == 4


def test_a_bad_flag_value_names_the_flag() -> None:
    with pytest.raises(ConfigError, match="flag --parallelism: bad value 'x' for parallelism"):
        Settings.load(environ={}, parallelism="x")


def test_an_unknown_key_in_the_file_lists_the_known_ones(tmp_path: Path) -> None:
    path = write_config(tmp_path / "d.toml", "[drayman]\nparalelism = 4\n")

    with pytest.raises(ConfigError) as caught:
        Settings.load(environ={"DRAYMAN_CONFIG": str(path)})

    message = str(caught.value)
    assert message.startswith(f"{path}: unknown setting 'paralelism'; known settings: ")
    assert "parallelism" in message.split("known settings: ")[1]
    assert "database_url" in message


def test_a_file_that_is_not_toml_is_a_config_error(tmp_path: Path) -> None:
    path = write_config(tmp_path / "d.toml", "parallelism = = 4\n")

    with pytest.raises(ConfigError, match=f"{path}: not valid TOML"):
        Settings.load(environ={"DRAYMAN_CONFIG": str(path)})


def test_home_and_config_paths_expand_the_user_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    write_config(tmp_path / "conf" / "d.toml", "[drayman]\nparallelism = 5\n")

    settings = Settings.load(environ={"DRAYMAN_HOME": "~/dr", "DRAYMAN_CONFIG": "~/conf/d.toml"})

    assert settings.home == tmp_path / "dr"
    assert settings.parallelism == 5


def test_effective_database_url_defaults_to_sqlite_under_home(tmp_path: Path) -> None:
    settings = Settings.load(environ={"DRAYMAN_HOME": str(tmp_path / "h")})

    assert settings.database_url == ""
    assert (
        settings.effective_database_url == f"sqlite:///{(tmp_path / 'h' / 'drayman.db').resolve()}"
    )
    rows = {key: value for key, value, _ in settings.describe()}
    assert rows["database_url"] == settings.effective_database_url


def test_effective_database_url_default_is_absolute_for_a_relative_home(tmp_path: Path) -> None:
    settings = Settings.load(environ={})

    assert (
        settings.effective_database_url
        == f"sqlite:///{(tmp_path / '.drayman' / 'drayman.db').resolve()}"
    )


def test_an_explicit_database_url_is_used_as_is() -> None:
    url = "postgresql+psycopg://drayman@db/drayman"

    settings = Settings.load(environ={"DRAYMAN_DATABASE_URL": url})

    assert settings.effective_database_url == url


def test_derived_folders_live_under_home() -> None:
    settings = Settings(home=Path("/var/lib/drayman"))

    assert settings.logs_folder == Path("/var/lib/drayman/logs")
    assert settings.bundle_cache == Path("/var/lib/drayman/bundles")


def test_with_overrides_returns_a_changed_copy() -> None:
    settings = Settings()

    changed = settings.with_overrides(parallelism=2)

    assert changed.parallelism == 2
    assert settings.parallelism == 16
    with pytest.raises(AttributeError):
        settings.parallelism = 3  # type: ignore[misc]


def test_trusted_proxies_from_the_environment_or_a_toml_list(tmp_path: Path) -> None:
    from_env = Settings.load(environ={"DRAYMAN_TRUSTED_PROXIES": " 10.0.0.0/8, 192.0.2.7 ,"})
    assert from_env.trusted_proxies == ("10.0.0.0/8", "192.0.2.7/32")
    assert Settings.load(environ={"DRAYMAN_TRUSTED_PROXIES": ""}).trusted_proxies == ()
    path = write_config(tmp_path / "d.toml", 'trusted_proxies = ["2001:db8::/32"]\n')
    from_file = Settings.load(environ={"DRAYMAN_CONFIG": str(path)})
    assert from_file.trusted_proxies == ("2001:db8::/32",)
    shown = dict((key, value) for key, value, _ in from_env.describe())
    assert shown["trusted_proxies"] == "10.0.0.0/8,192.0.2.7/32"


def test_the_deepest_conf_the_setting_allows_can_be_stored() -> None:
    settings = Settings.load(environ={"DRAYMAN_MAX_CONF_DEPTH": str(MAX_CONF_DEPTH_LIMIT)})
    conf: Any = {"leaf": 1}
    for _ in range(settings.max_conf_depth - 1):
        conf = {"x": conf}
    check_conf(conf, ConfLimits.of(settings))
    assert json.loads(json.dumps(conf)) == conf


def test_a_bad_proxy_or_slot_count_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"TRUSTED_PROXIES.*'proxy\.example' is not an IP"):
        Settings.load(environ={"DRAYMAN_TRUSTED_PROXIES": "10.0.0.1,proxy.example"})
    with pytest.raises(ConfigError, match="login_check_slots: must be 0 or more"):
        Settings.load(environ={"DRAYMAN_LOGIN_CHECK_SLOTS": "-1"})
    assert Settings.load(environ={"DRAYMAN_LOGIN_CHECK_SLOTS": "0"}).login_check_slots == 0


def test_celery_reads_its_floor_under_its_own_name() -> None:
    settings = Settings.load(
        environ={
            "DRAYMAN_EXECUTOR": "celery",
            "DRAYMAN_PARALLELISM": "4",
            "DRAYMAN_CELERY_MIN_IN_FLIGHT": "40",
        }
    )

    assert (settings.parallelism, settings.celery_min_in_flight) == (4, 40)
    assert settings.sources["celery_min_in_flight"] == "env DRAYMAN_CELERY_MIN_IN_FLIGHT"
    assert settings.deprecations == ()


def test_celery_reads_its_floor_from_parallelism_alone_with_a_deprecation() -> None:
    settings = Settings.load(environ={"DRAYMAN_EXECUTOR": "celery", "DRAYMAN_PARALLELISM": "7"})

    assert settings.celery_min_in_flight == 7
    assert settings.sources["celery_min_in_flight"] == (
        "env DRAYMAN_PARALLELISM (deprecated for this)"
    )
    [note] = settings.deprecations
    assert "env DRAYMAN_PARALLELISM" in note and "DRAYMAN_CELERY_MIN_IN_FLIGHT" in note


def test_the_local_executor_keeps_parallelism_to_itself(tmp_path: Path) -> None:
    path = write_config(tmp_path / "drayman.toml", "parallelism = 5\n")
    settings = Settings.load(environ={"DRAYMAN_CONFIG": str(path)})

    assert (settings.parallelism, settings.celery_min_in_flight) == (5, 16)
    assert settings.deprecations == ()
    assert "deprecations" not in {key for key, _, _ in settings.describe()}


def test_every_setting_is_in_the_operations_guide() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    table = {line.split("`")[1] for line in guide.splitlines() if line.startswith("| `DRAYMAN_")}
    settings = {f"DRAYMAN_{item.name.upper()}" for item in fields(Settings)}
    missing = settings - {"DRAYMAN_SOURCES", "DRAYMAN_DEPRECATIONS"} - table
    assert not missing, f"docs/operations.md's settings table lacks {sorted(missing)}"
