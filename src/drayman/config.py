"""Settings, read once from `DRAYMAN_*` environment variables and an optional TOML file.

Precedence: environment, then the file (`DRAYMAN_CONFIG`, else `$DRAYMAN_HOME/drayman.toml`),
then defaults. `Settings.load()` is called by the CLI and nowhere else; everything below the
CLI receives a `Settings` value. Every setting remembers where it came from, so
`drayman config` can say why a value is what it is, and an error names the key and its source.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from drayman.exceptions import ConfigError
from drayman.redact import mask_url

ENV_PREFIX = "DRAYMAN_"
# Settings whose value may carry a password: shown masked (`drayman.redact`)
URL_SETTINGS = frozenset({"database_url", "broker_url"})
# drayman's own secrets in the environment: never handed to a task (drayman.runner.isolation)
SECRET_ENV_VARS = (
    ENV_PREFIX + "DATABASE_URL",
    ENV_PREFIX + "BROKER_URL",
    ENV_PREFIX + "SECRET_KEY",
)


def hide_secrets(environ: MutableMapping[str, str]) -> None:
    """Remove drayman's own secrets from `environ`; on `os.environ`, from the C environment
    too, which every process started afterwards inherits. Called once settings are read, by
    the commands that start user code, and again in each try."""
    for name in SECRET_ENV_VARS:
        environ.pop(name, None)


def _positive_int(raw: Any) -> int:
    # int() would quietly turn TOML's `true` into 1 and `2.5` into 2
    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
        raise ValueError("must be a whole number")
    value = int(raw)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


MAX_CONF_DEPTH_LIMIT = 100  # far below Python's recursion limit, which json.dumps/loads meet


def _conf_depth(raw: Any) -> int:
    """A run conf's nesting limit: deeper than ~1000 levels, a conf that passed the check
    would then fail json.dumps (RecursionError) when stored, a 500 instead of a clear 4xx."""
    value = _positive_int(raw)
    if value > MAX_CONF_DEPTH_LIMIT:
        raise ValueError(
            f"must be at most {MAX_CONF_DEPTH_LIMIT} (JSON nested deeper cannot be stored); "
            "flatten the conf instead"
        )
    return value


def _positive_float(raw: Any) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


def _executor(raw: Any) -> str:
    value = str(raw).strip().lower()
    if value not in {"local", "celery"}:
        raise ValueError("must be 'local' or 'celery'")
    return value


def _log_format(raw: Any) -> str:
    value = str(raw).strip().lower()
    if value not in {"text", "json"}:
        raise ValueError("must be 'text' or 'json'")
    return value


def _user_name(raw: Any) -> str:
    value = str(raw).strip()
    if value.startswith("-") or any(c.isspace() or c in "/:" for c in value):
        raise ValueError("must be a user name, like drayman-task")
    return value


def _networks(raw: Any) -> tuple[str, ...]:
    """IP addresses and CIDR networks, as a TOML list or a comma-separated string."""
    import ipaddress

    items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
    result = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        try:
            result.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
    return tuple(result)


def _count(raw: Any) -> int:
    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
        raise ValueError("must be a whole number")
    value = int(raw)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _path(raw: Any) -> Path:
    return Path(str(raw)).expanduser()


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "home": _path,
    "dags_folder": _path,
    "database_url": str,
    "executor": _executor,
    "parallelism": _positive_int,
    "celery_min_in_flight": _positive_int,
    "broker_url": str,
    "broker_visibility_timeout_s": _positive_float,
    "parse_timeout_s": _positive_float,
    "dags_poll_s": _positive_float,
    "scheduler_poll_s": _positive_float,
    "remote_poll_s": _positive_float,
    "queued_timeout_s": _positive_float,
    "heartbeat_interval_s": _positive_float,
    "heartbeat_timeout_s": _positive_float,
    "max_result_bytes": _positive_int,
    "max_conf_bytes": _positive_int,
    "max_conf_depth": _conf_depth,
    "default_pool_slots": _positive_int,
    "worker_idle_s": _positive_float,
    "worker_grace_s": _positive_float,
    "worker_prefetch_multiplier": _positive_int,
    "worker_hold_s": _positive_float,
    "log_format": _log_format,
    "web_port": _positive_int,
    "run_as_user": _user_name,
    "trusted_proxies": _networks,
    "login_check_slots": _count,
}


@dataclass(frozen=True)
class Settings:
    """The effective configuration of one drayman process."""

    home: Path = Path(".drayman")
    dags_folder: Path = Path("dags")
    database_url: str = ""  # empty: SQLite file under home
    executor: str = "local"
    # the most tries one process runs at once on its own: a scheduler's local executor, and a
    # `drayman worker` without --concurrency (ETL tasks mostly wait on I/O). ADR 17
    parallelism: int = 16
    # executor 'celery': the least tries each queue may hold queued or running at once, over
    # every scheduler and worker; a served queue's cap is twice its live workers' total
    # --concurrency when that is more. Read from `parallelism`, with a warning, when only
    # that is set (its meaning for Celery before ADR 17)
    celery_min_in_flight: int = 16
    broker_url: str = ""
    # Redis only: an unacknowledged message is delivered again after this long (late acks)
    broker_visibility_timeout_s: float = 3600.0
    parse_timeout_s: float = 30.0  # a DAG file that imports longer than this is an error
    dags_poll_s: float = 2.0  # how often the DAG folder is checked for changes
    scheduler_poll_s: float = 5.0  # fallback wake-up when no event arrives
    # celery: workers ring the schedulers through the broker as outcomes are recorded (ADR 9);
    # while that wake-up cannot reach the broker, every running run is re-planned this often
    remote_poll_s: float = 0.5
    # with a broker: a try still QUEUED, unclaimed by any worker, this long after it was sent is
    # sent again (the broker may have lost it); a duplicate delivery is refused by the fence
    queued_timeout_s: float = 60.0
    heartbeat_interval_s: float = 5.0
    heartbeat_timeout_s: float = 30.0  # a worker silent this long is dead; its tries retry
    max_result_bytes: int = 65536  # cap on a Python task's JSON return value
    # a run conf (CLI, pages, API) as compact JSON, and how deep its objects and arrays nest
    max_conf_bytes: int = 65536
    max_conf_depth: int = 32
    default_pool_slots: int = 128
    worker_idle_s: float = 300.0  # an idle local worker process beyond the warm ones exits
    # `drayman worker` on SIGTERM: running tries get this long to finish, then they are killed
    # and handed back (retried without using up a retry)
    worker_grace_s: float = 300.0
    # messages a Celery worker holds per try slot (Celery's worker_prefetch_multiplier): more
    # than 1 lets a busy worker keep tries that an idle one could have taken
    worker_prefetch_multiplier: int = 1
    # how long the second try of a message may wait on its worker for a free slot before it
    # is sent again, for another worker (ADR 11)
    worker_hold_s: float = 2.0
    log_format: str = "text"  # "text" or "json" for drayman's own log lines on stdout
    web_port: int = 8080  # `drayman standalone` serves the web UI here, on 127.0.0.1
    # tries (and task callbacks) switch to this user, so they cannot read drayman's secrets
    # through /proc or the secret key file; empty: they run as drayman's own user
    run_as_user: str = ""
    # proxies whose X-Forwarded-For the web believes (IPs or CIDRs); from anyone else it is
    # ignored, so a client cannot pick the address its logins are counted and audited under.
    # None by default: trusting loopback would trust every process on this host, tasks too
    trusted_proxies: tuple[str, ...] = ()
    # password checks the web runs at once (0: the CPU count); more logins get a quick 429
    login_check_slots: int = 0
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    # what the operator should change: a setting read under its old name (`deprecation`)
    deprecations: tuple[str, ...] = field(default=(), compare=False)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'drayman.db').resolve()}"

    @property
    def logs_folder(self) -> Path:
        return self.home / "logs"

    @property
    def bundle_cache(self) -> Path:
        return self.home / "bundles"

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read the environment and the config file; `overrides` (from CLI flags) win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        home_raw = env.get(ENV_PREFIX + "HOME")
        home = Path(home_raw).expanduser() if home_raw else cls.home
        named = env.get(ENV_PREFIX + "CONFIG")
        config_path = Path(named).expanduser() if named else home / "drayman.toml"
        if named and not config_path.is_file():  # only the default file is optional
            raise ConfigError(
                f"env {ENV_PREFIX}CONFIG: no config file at {config_path}; "
                "fix the path or unset the variable"
            )
        for key, raw in _read_file(config_path).items():
            values[key] = _parse(key, raw, f"file {config_path}")
            sources[key] = f"file {config_path}"
        for key in _PARSERS:
            env_key = ENV_PREFIX + key.upper()
            if env_key in env:
                values[key] = _parse(key, env[env_key], f"env {env_key}")
                sources[key] = f"env {env_key}"
        for key, raw in overrides.items():
            if raw is not None:
                values[key] = _parse(key, raw, f"flag --{key.replace('_', '-')}")
                sources[key] = f"flag --{key.replace('_', '-')}"
        notes = _carry_old_celery_floor(values, sources)
        return cls(**values, sources=sources, deprecations=notes)

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with some values replaced, e.g. by tests."""
        return replace(self, **overrides)

    def describe(self) -> list[tuple[str, str, str]]:
        """(key, value, source) for every setting, for `drayman config`; URLs without their
        passwords."""
        rows = []
        for item in fields(self):
            if item.name in {"sources", "deprecations"}:
                continue
            value = getattr(self, item.name)
            if item.name == "database_url" and not value:
                value = self.effective_database_url
            if item.name in URL_SETTINGS:
                value = mask_url(str(value))
            if isinstance(value, tuple):
                value = ",".join(value)
            rows.append((item.name, str(value), self.sources.get(item.name, "default")))
        return rows


def _carry_old_celery_floor(values: dict[str, Any], sources: dict[str, str]) -> tuple[str, ...]:
    """Before ADR 17, `parallelism` was also Celery's floor of tries in flight per queue. A
    Celery deployment that sets only `parallelism` keeps that floor, and is told the new name."""
    if values.get("executor", Settings.executor) != "celery":
        return ()
    if "parallelism" not in sources or "celery_min_in_flight" in sources:
        return ()
    old = sources["parallelism"]
    values["celery_min_in_flight"] = values["parallelism"]
    sources["celery_min_in_flight"] = f"{old} (deprecated for this)"
    return (
        f"{old} sets the Celery floor of tries in flight per queue under its old name: set "
        f"{ENV_PREFIX}CELERY_MIN_IN_FLIGHT (celery_min_in_flight) to "
        f"{values['parallelism']} for that; parallelism is now only the most tries one "
        f"process runs at once (a scheduler's local executor, a worker's default "
        f"--concurrency)",
    )


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    table = data.get("drayman", data)
    unknown = sorted(set(table) - set(_PARSERS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting {unknown[0]!r}; known settings: {', '.join(_PARSERS)}"
        )
    return dict(table)


def _parse(key: str, raw: Any, source: str) -> Any:
    if key not in _PARSERS:
        raise ConfigError(
            f"{source}: unknown setting {key!r}; known settings: {', '.join(_PARSERS)}"
        )
    try:
        return _PARSERS[key](raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: bad value {raw!r} for {key}: {exc}") from exc
