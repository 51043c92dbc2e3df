"""The metadata schema (SQLAlchemy Core). Alembic migrations must produce exactly this.

Every index here serves a named hot query; the comment beside it says which one, so an index
that no query needs is easy to spot and drop.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql

from drayman.store.types import UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = 250  # length of dag ids, task ids, run ids, pool names

BigText = Text().with_variant(mysql.LONGTEXT(), "mysql")
BigBinary = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql")

bundle = Table(
    "bundle",
    metadata,
    Column("version", String(64), primary_key=True),  # sha256 of the manifest
    Column("created_at", UtcDateTime, nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("file_count", Integer, nullable=False),
    Column("manifest", BigText, nullable=False),  # JSON {path: sha256}
    Column("archive", BigBinary, nullable=False),  # deterministic tar.gz
)

deploy = Table(
    "deploy",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bundle_version", String(64), ForeignKey("bundle.version"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(ID), nullable=False),
    Column("source", String(ID), nullable=False),  # "folder" (watched) or "deploy" (CLI)
    Column("changes", BigText, nullable=False),  # JSON {"added": [...], "changed": [...], ...}
)

dag = Table(
    "dag",
    metadata,
    Column("dag_id", String(ID), primary_key=True),
    Column("bundle_version", String(64), nullable=False),  # newest version that defines it
    Column("fileloc", String(1000), nullable=False),
    Column("is_paused", Boolean, nullable=False, default=False),
    Column("is_active", Boolean, nullable=False, default=True),  # defined in the newest bundle
    Column("schedule", String(ID), nullable=True),
    Column("timezone", String(64), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("tags", Text, nullable=False, default="[]"),
    Column("max_active_runs", Integer, nullable=False),
    Column("max_active_tasks", Integer, nullable=False),
    # what the next run depends on (schedule, timezone, dates, catchup) as JSON; when it
    # changes, or the DAG is unpaused, needs_next tells the scheduler to compute it again
    Column("schedule_key", Text, nullable=False, default=""),
    Column("needs_next", Boolean, nullable=False, default=True),
    # the next scheduled run, precomputed so "which DAGs are due" is one indexed range scan
    Column("next_logical_date", UtcDateTime, nullable=True),
    Column("next_data_interval_start", UtcDateTime, nullable=True),
    Column("next_data_interval_end", UtcDateTime, nullable=True),
    Column("next_run_after", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # the scheduler's "due DAGs" query
    Index(None, "is_active", "is_paused", "next_run_after"),
)

serialized_dag = Table(
    "serialized_dag",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dag_id", String(ID), nullable=False),
    Column("bundle_version", String(64), nullable=False),
    Column("fileloc", String(1000), nullable=False),
    Column("spec", BigText, nullable=False),  # DagSpec JSON
    Column("source", BigText, nullable=False),  # the DAG file's code at this version
    Column("created_at", UtcDateTime, nullable=False),
    # spec lookup by (dag, version): the scheduler, the runner and the web's code view
    UniqueConstraint("dag_id", "bundle_version"),
)

import_error = Table(
    "import_error",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bundle_version", String(64), nullable=False, index=True),
    Column("fileloc", String(1000), nullable=False),
    Column("lineno", Integer, nullable=True),
    Column("message", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

dag_run = Table(
    "dag_run",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dag_id", String(ID), nullable=False),
    Column("run_id", String(ID), nullable=False),
    Column("run_type", String(20), nullable=False),
    Column("state", String(20), nullable=False),
    Column("bundle_version", String(64), nullable=False),  # pinned: its tasks run this code
    Column("logical_date", UtcDateTime, nullable=False),
    Column("data_interval_start", UtcDateTime, nullable=False),
    Column("data_interval_end", UtcDateTime, nullable=False),
    Column("run_after", UtcDateTime, nullable=False),
    Column("conf", Text, nullable=False, default="{}"),
    Column("params", Text, nullable=False, default="{}"),  # effective: defaults + conf
    Column("triggered_by", String(ID), nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
    Column("start_date", UtcDateTime, nullable=True),
    Column("end_date", UtcDateTime, nullable=True),
    # when a worker claimed this finish's DAG callback (runs.claim_callback): the fence that
    # makes a replayed or forged run_callback message run nothing; cleared when it reopens
    Column("callback_claimed_at", UtcDateTime, nullable=True),
    # run ids are unique per DAG; scheduled run ids derive from the logical date, so two
    # schedulers creating the same run collide here instead of creating it twice
    UniqueConstraint("dag_id", "run_id"),
    # the scheduler's active-runs query and max_active_runs counts
    Index(None, "state", "dag_id"),
    # a DAG's run list and grid, newest first
    Index(None, "dag_id", "logical_date"),
)

task_instance = Table(
    "task_instance",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dag_run_id", Integer, ForeignKey("dag_run.id", ondelete="CASCADE"), nullable=False),
    Column("task_id", String(ID), nullable=False),
    Column("map_index", Integer, nullable=False, default=-1),
    Column("state", String(20), nullable=False),
    Column("try_number", Integer, nullable=False, default=0),  # tries created so far
    Column("max_tries", Integer, nullable=False),
    # the fencing token: only this try may record a start or an outcome
    Column("current_try_id", Integer, nullable=True, index=True),
    Column("priority", Integer, nullable=False, default=1),
    Column("pool", String(ID), nullable=False),
    Column("pool_slots", Integer, nullable=False, default=1),
    Column("queue", String(ID), nullable=False),
    Column("next_retry_at", UtcDateTime, nullable=True),
    Column("queued_at", UtcDateTime, nullable=True),
    Column("start_date", UtcDateTime, nullable=True),
    Column("end_date", UtcDateTime, nullable=True),
    Column("result", BigText, nullable=True),  # JSON return value of a Python task
    # a run's task instances, and one task instance by its natural key
    UniqueConstraint("dag_run_id", "task_id", "map_index"),
    # slot counting per pool and queue among active task instances
    Index(None, "state", "pool"),
)

task_try = Table(
    "task_try",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "task_instance_id",
        Integer,
        ForeignKey("task_instance.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("try_number", Integer, nullable=False),
    Column("state", String(20), nullable=False),
    Column("hostname", String(ID), nullable=False, default=""),
    Column("pid", Integer, nullable=True),
    Column("worker_id", Integer, nullable=True),  # the component that runs it
    Column("queued_at", UtcDateTime, nullable=False),
    Column("start_date", UtcDateTime, nullable=True),
    Column("end_date", UtcDateTime, nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("signal", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("log_path", Text, nullable=False, default=""),
    # attempt history of one task instance
    UniqueConstraint("task_instance_id", "try_number"),
    # lost-try detection: unfinished tries of dead workers
    Index(None, "state", "worker_id"),
)

pool = Table(
    "pool",
    metadata,
    Column("name", String(ID), primary_key=True),
    Column("slots", Integer, nullable=False),
    Column("description", Text, nullable=False, default=""),
)

component = Table(
    "component",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(20), nullable=False),  # scheduler | worker | dag_processor
    Column("hostname", String(ID), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("executor", String(20), nullable=False, default=""),
    Column("queues", Text, nullable=False, default="[]"),
    Column("concurrency", Integer, nullable=False, default=0),
    Column("state", String(20), nullable=False),  # running | stopped
    Column("started_at", UtcDateTime, nullable=False),
    Column("heartbeat_at", UtcDateTime, nullable=False),
    Column("stopped_at", UtcDateTime, nullable=True),
    # liveness checks: live components of a kind, and stale heartbeats
    Index(None, "kind", "state", "heartbeat_at"),
)

log_chunk = Table(
    "log_chunk",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("try_id", Integer, nullable=False),  # task_try.id (no FK: shipping locks no try row)
    Column("seq", Integer, nullable=False),  # 0, 1, 2, ... per try, in the order written
    Column("data", BigText, nullable=False),  # UTF-8 text of the try's log, in order
    Column("created_at", UtcDateTime, nullable=False),
    # a try's chunks in order from seq N (`tasks logs --follow`); also refuses a chunk twice
    UniqueConstraint("try_id", "seq"),
)

# ---------------------------------------------------------------- users, tokens, sessions

USERNAME = 150  # lowercase letters, digits and . _ @ - (drayman.auth.users.normalize_username)

app_user = Table(
    "app_user",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # login looks a user up by name
    Column("username", String(USERNAME), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),  # argon2id, PHC string format
    Column("role", String(20), nullable=False),  # admin | operator | viewer
    Column("created_at", UtcDateTime, nullable=False),
    Column("password_changed_at", UtcDateTime, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
)

api_token = Table(
    "api_token",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("app_user.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(ID), nullable=False),
    # sha256 hex of the token: the token itself is shown once and never stored;
    # every API request with a token looks it up by this hash
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),  # the token's first characters, for display
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_used_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
    # a user's tokens (listing; deleting the user); also the index MySQL wants for the FK
    Index(None, "user_id"),
)

web_session = Table(
    "web_session",
    metadata,
    # sha256 hex of the session token in the cookie: a stolen database holds no live cookie
    Column("id", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("app_user.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    # revoking every session of a user (password change); also the FK's index on MySQL
    Index(None, "user_id"),
    # purging expired sessions
    Index(None, "expires_at"),
)

# The login rate limit's counters (auth/throttle.py): one row per (scope, key), where scope
# is "user" (a username, from anywhere) or "pair" (a username from one client address). A
# login reserves its attempt with one guarded UPDATE of these rows before the password is
# checked, so concurrent guesses cannot all get past a count they all read at once.
login_counter = Table(
    "login_counter",
    metadata,
    Column("scope", String(8), primary_key=True),
    Column("key", String(USERNAME + 1 + 64), primary_key=True),  # "name" or "name address"
    Column("window_start", UtcDateTime, nullable=False),
    Column("failures", Integer, nullable=False, default=0),  # attempts not (yet) successful
    # purging counters whose window has ended (store.login_failures.purge)
    Index(None, "window_start"),
)

# ---------------------------------------------------------------- audit trail

# Who did what, when and from where: logins, run actions, user and token changes (and, from
# issue 13, deploys). Kept for good: nothing prunes it (login_counter is the short-lived one).
audit_event = Table(
    "audit_event",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("actor", String(USERNAME), nullable=False),  # a username, or the OS user of the CLI
    Column("source", String(64), nullable=False),  # the client address, or "cli"
    Column("action", String(40), nullable=False),  # e.g. "task.clear" (store/audit.py)
    Column("object_type", String(20), nullable=False, default=""),  # dag|run|task|user|token
    Column("object_id", String(1000), nullable=False, default=""),  # "dag/run/task", a name, an id
    Column("detail", Text, nullable=False, default="{}"),  # small JSON, never a secret
    # `drayman audit list` and GET /api/v1/audit: newest first, by actor or by action
    Index(None, "created_at"),
    Index(None, "actor", "created_at"),
    Index(None, "action", "created_at"),
)
