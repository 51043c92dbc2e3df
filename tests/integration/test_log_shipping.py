"""A try's log shipped to the database in chunks, on every supported database."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from drayman.runner.execute import run_try
from drayman.runner.loader import unload_all
from drayman.runner.logship import LogShipper
from drayman.store import logs as log_store
from drayman.store.engine import Store
from drayman.workloads import RunContextData, TryWorkload, log_relpath

NOW = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)

DAG_FILE = """
import time

from drayman import DAG, task

with DAG("shipped"):

    @task
    def talk():
        print("first line")
        time.sleep(1.0)
        print("second line, non-ASCII: é€😀")

    talk()
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stored(store: Store, try_id: int) -> list[tuple[int, str]]:
    with store.read() as conn:
        return log_store.read_chunks(conn, try_id)


def test_append_and_read_in_order(store: Store) -> None:
    with store.begin() as conn:
        log_store.append_chunks(conn, 7, 0, ["one\n", b"two \xc3\xa9 \xff\n"], now=NOW)
        log_store.append_chunks(conn, 7, 2, ["three \x00 😀\n"], now=NOW)
        log_store.append_chunks(conn, 8, 0, ["other try\n"], now=NOW)

    assert stored(store, 7) == [
        (0, "one\n"),
        (1, "two é \ufffd\n"),
        (2, "three \ufffd 😀\n"),
    ]
    with store.read() as conn:
        assert log_store.read_chunks(conn, 7, after_seq=1) == [(2, "three \ufffd 😀\n")]
        assert log_store.read_chunks(conn, 7, after_seq=0, limit=1) == [(1, "two é \ufffd\n")]
        assert log_store.last_seq(conn, 7) == 2
        assert log_store.last_seq(conn, 9) == -1


def test_shipper_flushes_in_order_and_loses_nothing(store: Store) -> None:
    clock = Clock()
    shipper = LogShipper(store, 3, max_bytes=1000, clock=clock)
    written = bytearray()
    for i in range(400):
        # multi-byte characters cut across writes must come out whole
        piece = f"line {i} é€😀 {'x' * (i % 37)}\n".encode()
        for part in (piece[:7], piece[7:]):
            shipper.write(part)
            written += part
        if i % 50 == 0:
            clock.now += 0.6
            due = shipper.due()
            assert due is not None and due <= clock.now
            shipper.flush()
    assert len(stored(store, 3)) > 10  # shipped along the way, not only at the end
    shipper.close()

    chunks = stored(store, 3)
    assert [seq for seq, _ in chunks] == list(range(len(chunks)))
    assert "".join(text for _, text in chunks) == written.decode()
    assert shipper.due() is None


def test_shipper_waits_for_the_interval_or_the_size(store: Store) -> None:
    clock = Clock()
    shipper = LogShipper(store, 4, interval_s=0.5, max_bytes=100, clock=clock)
    shipper.write(b"small\n")
    assert stored(store, 4) == []
    assert shipper.due() == clock.now + 0.5

    clock.now += 0.5
    shipper.write(b"due now\n")
    assert stored(store, 4) == [(0, "small\ndue now\n")]

    shipper.write(b"y" * 100)  # max_bytes reached before the interval
    assert stored(store, 4)[-1] == (1, "y" * 100)
    shipper.close()


def test_a_database_failure_is_logged_once_and_retried(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = log_store.append_chunks
    failures = [2]

    def flaky(
        conn: Connection, try_id: int, first_seq: int, chunks: Sequence[Any], **kw: Any
    ) -> None:
        if failures[0]:
            failures[0] -= 1
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        real(conn, try_id, first_seq, chunks, **kw)

    monkeypatch.setattr(log_store, "append_chunks", flaky)
    clock = Clock()
    shipper = LogShipper(store, 5, clock=clock)
    caplog.set_level(logging.INFO, logger="drayman.runner.logship")

    shipper.write(b"a\n")
    shipper.flush()  # fails: not raised
    shipper.write(b"b\n")
    shipper.flush()  # fails again: not logged again
    assert stored(store, 5) == []
    shipper.write(b"c\n")
    shipper.flush()

    assert "".join(text for _, text in stored(store, 5)) == "a\nb\nc\n"
    events = [r.getMessage().split(" ", 1)[0] for r in caplog.records]
    assert events == ["log.ship_failed", "log.ship_resumed"]
    shipper.close()


def test_a_flush_that_committed_despite_an_error_is_not_stored_twice(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = log_store.append_chunks
    calls = [0]

    def commits_then_fails(
        conn: Connection, try_id: int, first_seq: int, chunks: Sequence[Any], **kw: Any
    ) -> None:
        calls[0] += 1
        real(conn, try_id, first_seq, chunks, **kw)
        if calls[0] == 1:
            # the commit happened, but the worker never heard: as when the reply is lost
            conn.commit()
            raise OperationalError("COMMIT", {}, Exception("connection reset"))

    monkeypatch.setattr(log_store, "append_chunks", commits_then_fails)
    shipper = LogShipper(store, 6, clock=Clock())
    shipper.write(b"once\n")
    shipper.flush()
    shipper.write(b"twice?\n")
    shipper.close()

    assert stored(store, 6) == [(0, "once\n"), (1, "twice?\n")]


@pytest.fixture
def bundle(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "bundle"
    (root / "dags").mkdir(parents=True)
    (root / "dags" / "shipped.py").write_text(DAG_FILE)
    yield root
    unload_all()  # this process is pytest's: leave no bundle on its sys.path


def test_run_try_ships_the_log_while_the_task_runs(
    store: Store, bundle: Path, tmp_path: Path
) -> None:
    run = RunContextData(
        dag_id="shipped",
        run_id="manual__1",
        run_type="manual",
        logical_date="2026-03-08T12:00:00+00:00",
        data_interval_start="2026-03-08T12:00:00+00:00",
        data_interval_end="2026-03-08T12:00:00+00:00",
        timezone="UTC",
        bundle_version="cd" * 32,
    )
    workload = TryWorkload(
        try_id=42,
        ti_id=42,
        task_id="talk",
        map_index=-1,
        try_number=1,
        max_tries=1,
        fileloc="dags/shipped.py",
        run=run,
        upstream_results={},
        execution_timeout_s=None,
        log_path=log_relpath("shipped", "manual__1", "talk", -1, 1),
    )
    shipper = LogShipper(store, 42, interval_s=0.2)

    outcome = run_try(
        workload,
        bundle,
        tmp_path / "logs",
        max_result_bytes=65536,
        on_started=lambda _: None,
        log_sink=shipper,
    )

    assert outcome.succeeded, outcome.error
    chunks = stored(store, 42)
    text = "".join(t for _, t in chunks)
    assert text == (tmp_path / "logs" / workload.log_path).read_text()
    assert "first line\nsecond line, non-ASCII: é€😀\n" in text
    assert text.splitlines()[-1].startswith("[drayman] success in ")
    # "first line" was shipped during the sleep, by the poll loop's flush, not at the end
    assert any("first line" in t and "second line" not in t for _, t in chunks)


def test_tasks_logs_reader_prefers_chunks_and_reports_the_end(
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from drayman.cli.tasks import _LogReader
    from drayman.states import TryState
    from drayman.store import tries as try_store

    states = [TryState.RUNNING, TryState.SUCCESS]
    monkeypatch.setattr(try_store, "try_state", lambda conn, try_id: states.pop(0))
    local = tmp_path / "attempt=1.log"
    local.write_text("the worker's own copy\n")
    with store.begin() as conn:
        log_store.append_chunks(conn, 9, 0, ["shipped 1\n"], now=NOW)
    reader = _LogReader(store, 9, local)

    assert reader.tick() is False
    assert capsys.readouterr().out == "shipped 1\n"
    with store.begin() as conn:
        log_store.append_chunks(conn, 9, 1, ["shipped 2\n", "end\n"], now=NOW)
    assert reader.tick() is True
    assert capsys.readouterr().out == "shipped 2\nend\n"

    # no chunks at all: the local file, read on from where it was
    states[:] = [TryState.RUNNING, TryState.FAILED]
    from_file = _LogReader(store, 10, local)
    assert from_file.tick() is False
    with local.open("a") as out:
        out.write("more é\n")
    assert from_file.tick() is True
    assert capsys.readouterr().out == "the worker's own copy\nmore é\n"
