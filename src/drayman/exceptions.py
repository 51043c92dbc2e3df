"""Every error drayman raises on purpose.

    DraymanError                  root: catch this to catch anything drayman meant to raise
    ├── ConfigError               a setting is missing or malformed (names the key and its source)
    ├── DagDefinitionError        a DAG file describes something impossible (cycle, duplicate id)
    │   ├── ScheduleError         a schedule string or interval cannot be understood
    │   └── TimezoneError         a timezone name is not an IANA zone
    ├── ParamsError               run conf does not match a DAG's params (or is no JSON object)
    ├── RunIdError                a run id that a manual run may not take
    ├── ResultTooLargeError       a task returned a value above the size cap
    ├── BundleError               a DAG folder cannot be packed, stored or fetched
    ├── StoreError                the metadata database refuses something
    │   ├── NotFoundError         a DAG, run or task that does not exist
    │   └── ConflictError         the change collides with the current state
    ├── ExecutorError             an executor cannot take or run work
    └── AuthError                 who is asking may not do what they ask
        ├── InvalidCredentials    a wrong username, password or token (never says which)
        ├── TooManyAttempts       logins refused for a while after repeated failures
        ├── PermissionDenied      the role does not allow the action
        └── UnacceptableCredential a username or password the policy refuses (too short...)

Messages say what is wrong, where, and what to do, in one line: the CLI prints them as they are.
"""

from __future__ import annotations


class DraymanError(Exception):
    """Root of every error drayman raises on purpose."""


class ConfigError(DraymanError):
    """A setting is missing or malformed."""


class DagDefinitionError(DraymanError):
    """A DAG file describes something drayman cannot schedule."""


class ScheduleError(DagDefinitionError):
    """A cron string, preset or interval that cannot be understood."""


class TimezoneError(DagDefinitionError):
    """A timezone name that is not an IANA zone."""


class ParamsError(DraymanError):
    """Run conf that does not fit a DAG's declared params, or that is no safe JSON object.
    `field` names where (`conf.rows`, `conf.a.b[2]`), for the API's error body."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class RunIdError(DraymanError):
    """A run id a manual run may not take: reserved prefix, a path part, too long..."""


class ResultTooLargeError(DraymanError):
    """A task's return value is larger than the configured cap."""


class BundleError(DraymanError):
    """A DAG folder that cannot be packed, stored or fetched."""


class StoreError(DraymanError):
    """The metadata database refused an operation."""


class NotFoundError(StoreError):
    """A DAG, run or task instance that does not exist."""


class ConflictError(StoreError):
    """A change that collides with the current state (e.g. a duplicate run id)."""


class ExecutorError(DraymanError):
    """An executor that cannot take or run work."""


class AuthError(DraymanError):
    """Who is asking may not do what they ask."""


class InvalidCredentials(AuthError):
    """A wrong username, password or token. The message never says which part was wrong."""


class TooManyAttempts(AuthError):
    """Too many failed logins for a username or an address; `retry_after_s` says how long."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermissionDenied(AuthError):
    """The user's role does not allow the action."""


class UnacceptableCredential(AuthError):
    """A username or password that the policy refuses (too short, bad characters)."""
