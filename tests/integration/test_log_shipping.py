"""A try's log shipped to the database in chunks, on every supported database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drayman.runner.execute import run_try
from drayman.runner.loader import unload_all
from drayman.runner.logship import LogChunker, PipeLogSink
from drayman.store import logs as log_store
from drayman.store.engine import Store
from drayman.workloads import LogChunks, RunContextData, TryWorkload, log_relpath

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


def test_append_many_and_what_is_not_yet_stored(store: Store) -> None:
    batches = [LogChunks(11, 0, ("a\n", "b\n")), LogChunks(12, 0, ("x\n",))]
    with store.begin() as conn:
        log_store.append_many(conn, batches, now=NOW)
    # a flush whose commit was uncertain is retried with more chunks: only the new ones stay
    retried = [LogChunks(11, 0, ("a\n", "b\n", "c\n")), LogChunks(12, 0, ("x\n",))]
    with store.begin() as conn:
        rest = log_store.not_yet_stored(conn, retried)
        assert rest == [LogChunks(11, 2, ("c\n",))]
        log_store.append_many(conn, rest, now=NOW)
    assert stored(store, 11) == [(0, "a\n"), (1, "b\n"), (2, "c\n")]
    assert stored(store, 12) == [(0, "x\n")]


def test_chunker_numbers_chunks_in_order_and_loses_nothing() -> None:
    clock = Clock()
    chunker = LogChunker(3, max_bytes=1000, clock=clock)
    written, sent = bytearray(), []
    for i in range(400):
        # multi-byte characters cut across writes must come out whole
        piece = f"line {i} é€😀 {'x' * (i % 37)}\n".encode()
        for part in (piece[:7], piece[7:]):
            sent.append(chunker.write(part))
            written += part
        if i % 50 == 0:
            clock.now += 0.6
            due = chunker.due()
            assert due is not None and due <= clock.now
            sent.append(chunker.take())
    sent.append(chunker.take(final=True))
    batches = [b for b in sent if b is not None]

    assert len(batches) > 10  # sent along the way, not only at the end
    seqs = [b.first_seq + i for b in batches for i in range(len(b.chunks))]
    assert seqs == list(range(len(seqs)))
    assert "".join(t for b in batches for t in b.chunks) == written.decode()
    assert all(len(t.encode()) <= 1000 for b in batches for t in b.chunks)
    assert chunker.due() is None


def test_chunker_waits_for_the_interval_or_the_size() -> None:
    clock = Clock()
    chunker = LogChunker(4, interval_s=0.5, max_bytes=100, clock=clock)
    assert chunker.write(b"small\n") is None
    assert chunker.due() == clock.now + 0.5

    clock.now += 0.5
    assert chunker.write(b"due now\n") == LogChunks(4, 0, ("small\ndue now\n",))
    # max_bytes reached before the interval
    assert chunker.write(b"y" * 100) == LogChunks(4, 1, ("y" * 100,))
    assert chunker.take(final=True) is None


def test_a_sink_whose_pipe_is_gone_drops_chunks_quietly() -> None:
    def broken(_chunks: LogChunks) -> None:
        raise BrokenPipeError("the engine is gone")

    sink = PipeLogSink(5, broken)
    sink.write(b"x" * 70000)  # a full chunk: sent at once, and dropped
    sink.close()


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
    sent: list[LogChunks] = []
    sink = PipeLogSink(42, sent.append)
    sink._chunker.interval_s = 0.2  # a flush during the task's 1 s sleep

    outcome = run_try(
        workload,
        bundle,
        tmp_path / "logs",
        max_result_bytes=65536,
        on_started=lambda _: None,
        log_sink=sink,
    )

    assert outcome.succeeded, outcome.error
    with store.begin() as conn:
        log_store.append_many(conn, sent, now=NOW)
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
    from drayman.store import try_history

    states = [TryState.RUNNING, TryState.SUCCESS]
    monkeypatch.setattr(try_history, "try_state", lambda conn, try_id: states.pop(0))
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
