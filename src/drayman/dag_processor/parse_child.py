"""The DAG-parsing process: imports each DAG file of one bundle in a forked child of its own.

Started by `drayman.dag_processor.parser.parse_bundle` as
`python -P -m drayman.dag_processor.parse_child`, so the scheduler never imports user code. The
protocol is one JSON request on stdin and one JSON response on stdout:

    request:  {"root": "/abs/bundle", "files": ["a.py", ...], "timeout_s": 30,
               "concurrency": 4, "run_as": "etl"}  (run_as: only with run_as_user)
    response: {"files": [{"fileloc": "a.py", "specs": [<DagSpec dict>, ...],
                          "error": null | {"lineno": 3, "message": "..."}}, ...]}

Files come back in request order. Stdout carries nothing else: this process moves its own
fd 1 onto stderr, and each file's child points fds 0, 1 and 2 at /dev/null, so a `print` in a
DAG file cannot corrupt the response.

Each file's child starts its own session (os.setsid), so a timeout kills it together with
anything it spawned; a file that hangs, exits, crashes the interpreter or raises becomes one
error and never affects another file. drayman's own modules are imported once here, before
forking, so each child only pays for the user's imports.
"""

from __future__ import annotations

import contextlib
import faulthandler
import hashlib
import importlib.util
import json
import os
import re
import select
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from drayman.runner.preload import DAG_MODULES

Outcome = dict[str, Any]

TIMEOUT_MESSAGE = "import took longer than {timeout} s (DRAYMAN_PARSE_TIMEOUT_S)"
_MAX_MESSAGE = 1000
_POLL_S = 0.05
_FRAME = re.compile(r'File "(?P<file>.*)", line (?P<line>\d+)')


def candidate_files(root: Path) -> list[str]:
    """Relative posix paths of the .py files that may define DAGs, sorted.

    Like Airflow's safe mode: a file must mention both "drayman" and "DAG" to be imported, so
    helper modules and scripts are never run just because they sit in the DAG folder.
    """
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        for name in filenames:
            if name.endswith(".py") and not name.startswith("."):
                path = Path(dirpath, name)
                if _mentions_dag(path):
                    found.append(path.relative_to(root).as_posix())
    return sorted(found)


def _mentions_dag(path: Path) -> bool:
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return b"drayman" in data and b"DAG" in data


# --- the parent: one forked child per file, at most `concurrency` at once ------------------


@dataclass
class _Job:
    """One file being imported by one forked child."""

    fileloc: str
    pid: int
    deadline: float
    result_fd: int
    diag_fd: int
    result: bytearray = field(default_factory=bytearray)
    diag: bytearray = field(default_factory=bytearray)
    open_fds: set[int] = field(default_factory=set)
    status: int | None = None  # os.waitpid status once finished
    timed_out: bool = False

    def read(self, fd: int) -> None:
        """Take what the child wrote on `fd`; close it at end of file."""
        buffer = self.result if fd == self.result_fd else self.diag
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                os.close(fd)
                self.open_fds.discard(fd)
                return
            buffer += chunk

    def poll(self, now: float) -> bool:
        """True once the child is gone (exited, or killed at its deadline) and reaped."""
        exited = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if exited is None and now < self.deadline:
            return False
        self.timed_out = exited is None
        # kill the whole session's group before reaping, while its id cannot be reused:
        # a timeout ends the child; otherwise it ends whatever the import left running
        _kill_group(self.pid)
        _, self.status = os.waitpid(self.pid, 0)
        for fd in list(self.open_fds):
            self.read(fd)
            if fd in self.open_fds:
                os.close(fd)
                self.open_fds.discard(fd)
        return True

    def outcome(self, timeout_s: float, root: Path) -> Outcome:
        if self.timed_out:
            message = TIMEOUT_MESSAGE.format(timeout=f"{timeout_s:g}")
            return _failed(self.fileloc, _diag_lineno(self.diag, root / self.fileloc), message)
        if self.status == 0:
            try:
                reported: Outcome = json.loads(self.result)
                return {"fileloc": self.fileloc, **reported}
            except ValueError:
                pass  # an exit(0) before the child could answer: reported as a death below
        lineno = _diag_lineno(self.diag, root / self.fileloc)
        return _failed(self.fileloc, lineno, _death_message(self.status or 0))


def parse_files(root: Path, files: list[str], timeout_s: float, concurrency: int) -> list[Outcome]:
    """Import every file in its own child, `concurrency` at a time, each within `timeout_s`."""
    queue = list(reversed(files))
    running: list[_Job] = []
    outcomes: dict[str, Outcome] = {}
    signal.signal(signal.SIGTERM, lambda *_: _abort(running))
    while queue or running:
        while queue and len(running) < max(1, concurrency):
            running.append(_start(root, queue.pop(), timeout_s, running))
        _wait_for_output(running)
        now = time.monotonic()
        for job in [job for job in running if job.poll(now)]:
            running.remove(job)
            outcomes[job.fileloc] = job.outcome(timeout_s, root)
    return [outcomes[fileloc] for fileloc in files]


def _start(root: Path, fileloc: str, timeout_s: float, running: list[_Job]) -> _Job:
    result_r, result_w = os.pipe()
    diag_r, diag_w = os.pipe()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            for fd in [result_r, diag_r, *(fd for job in running for fd in job.open_fds)]:
                os.close(fd)
            _child_main(root, fileloc, result_w, diag_w, timeout_s)
        finally:
            os._exit(70)  # only reached if the machinery itself failed
    os.close(result_w)
    os.close(diag_w)
    for fd in (result_r, diag_r):
        os.set_blocking(fd, False)
    return _Job(
        fileloc=fileloc,
        pid=pid,
        deadline=time.monotonic() + timeout_s,
        result_fd=result_r,
        diag_fd=diag_r,
        open_fds={result_r, diag_r},
    )


def _wait_for_output(running: list[_Job]) -> None:
    """Read whatever the children wrote, waking at least every _POLL_S to check exits."""
    owners = {fd: job for job in running for fd in job.open_fds}
    nearest = min((job.deadline for job in running), default=time.monotonic())
    wait = min(_POLL_S, max(0.0, nearest - time.monotonic()))
    if not owners:
        time.sleep(wait)
        return
    readable, _, _ = select.select(list(owners), [], [], wait)
    for fd in readable:
        owners[fd].read(fd)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already empty
        os.killpg(pgid, signal.SIGKILL)


def _abort(running: list[_Job]) -> NoReturn:
    """On SIGTERM (the caller's overall timeout): take every child down with us."""
    for job in running:
        _kill_group(job.pid)
    os._exit(128 + signal.SIGTERM)


def _failed(fileloc: str, lineno: int | None, message: str) -> Outcome:
    return {"fileloc": fileloc, "specs": [], "error": {"lineno": lineno, "message": message}}


def _death_message(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return f"importing the file ended its process (killed by signal {name})"
    return f"importing the file ended its process (exit code {os.waitstatus_to_exitcode(status)})"


def _diag_lineno(diag: bytes | bytearray, path: Path) -> int | None:
    """The deepest line of `path` in a faulthandler dump (it lists the newest frame first)."""
    for match in _FRAME.finditer(diag.decode("utf-8", errors="replace")):
        if match["file"] == str(path):
            return int(match["line"])
    return None


# --- the child: import one file, answer on a pipe, exit ---------------------------------


def _child_main(root: Path, fileloc: str, result_fd: int, diag_fd: int, timeout_s: float) -> None:
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    # where it hung or crashed: a traceback on the diag pipe just before the deadline, or on
    # a fatal signal; the parent reads the line number from it
    faulthandler.enable(file=diag_fd, all_threads=False)
    faulthandler.dump_traceback_later(max(timeout_s * 0.8, timeout_s - 0.5), file=diag_fd)
    me = os.getpid()
    outcome = _import_file(root, fileloc)
    faulthandler.cancel_dump_traceback_later()
    if os.getpid() == me:  # a DAG file that forked must not answer twice
        _write_all(result_fd, json.dumps(outcome).encode())
    os._exit(0)  # skip atexit hooks and non-daemon threads the DAG file may have started


def _import_file(root: Path, fileloc: str) -> Outcome:
    """Import one DAG file and serialize the DAGs it defines, or describe why it failed."""
    from drayman.authoring.dag import collect_dags, reset_registry
    from drayman.authoring.serialize import serialize_dag

    path = root / fileloc
    sys.path.insert(0, str(root))  # bundle-local imports: `from etl.helpers import x`
    os.chdir(root)
    sys.argv = [str(path)]
    name = "drayman_dagfile_" + hashlib.sha1(fileloc.encode()).hexdigest()[:16]
    reset_registry()
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {fileloc} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        specs = [serialize_dag(dag, fileloc).to_dict() for dag in collect_dags()]
        json.dumps(specs)  # fail here, as this file's error, if a value is not JSON
    except BaseException as exc:  # SystemExit too: every way out is this file's error
        lineno, message = describe_error(exc, path, root)
        return {"specs": [], "error": {"lineno": lineno, "message": message}}
    return {"specs": specs, "error": None}


def describe_error(exc: BaseException, path: Path, root: Path) -> tuple[int | None, str]:
    """One line saying what went wrong importing `path`, and the best line number in it."""
    from drayman.exceptions import DagDefinitionError

    frames = traceback.extract_tb(exc.__traceback__)
    in_file = [f.lineno for f in frames if f.filename == str(path)]
    lineno = in_file[-1] if in_file else None
    if isinstance(exc, DagDefinitionError):  # its message may start with "file.py:12: "
        stated, rest = _stated_location(str(exc), path, root)
        return stated or lineno, _one_line(rest)
    if isinstance(exc, SyntaxError):
        if exc.filename == str(path):
            return exc.lineno, _one_line(f"{type(exc).__name__}: {exc.msg}")
        where = f"{_relative(exc.filename or '?', root)}:{exc.lineno}"
        return lineno, _one_line(f"{type(exc).__name__} in {where}: {exc.msg}")
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    deepest = frames[-1] if frames else None
    if deepest and deepest.filename != str(path) and Path(deepest.filename).is_relative_to(root):
        text += f" (at {_relative(deepest.filename, root)}:{deepest.lineno})"
    return lineno, _one_line(text)


def _stated_location(message: str, path: Path, root: Path) -> tuple[int | None, str]:
    """The line a DagDefinitionError names when it names this file, and the message without
    that "file.py:12: " prefix: the error is stored with its file and line already, and
    every reader (CLI, web) puts them in front once."""
    match = re.match(rf"{re.escape(_relative(str(path), root))}:(\d+): ", message)
    if match is None:
        return None, message
    return int(match[1]), message[match.end() :]


def _relative(filename: str, root: Path) -> str:
    try:
        return Path(filename).relative_to(root).as_posix()
    except ValueError:
        return filename


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 3] + "..."


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# --- entry point -------------------------------------------------------------------------


def _preload() -> None:
    """Import what defining a DAG needs once, before forking, so each child starts warm.

    All of it: with `run_as_user`, the children run as a user who may not be able to read
    drayman's installation (nor the interpreter's standard library) to import it later.
    """
    for name in DAG_MODULES:
        importlib.import_module(name)


def _become(name: str) -> None:
    """Run every DAG file's top level as `name` (the `run_as_user` setting), like a task: as
    drayman's user it could read the scheduler's /proc environ and the secret key file.
    After `_preload`: the user may not be able to read drayman's installation."""
    from drayman.runner.isolation import become, resolve_run_as

    run_as = resolve_run_as(name)
    if run_as is not None:
        become(run_as)


def main() -> None:
    protocol = os.dup(1)
    os.dup2(2, 1)  # from here on, a stray print lands on stderr, never in the response
    sys.stdout = sys.stderr
    request = json.load(sys.stdin)
    _preload()
    if request.get("run_as"):
        _become(request["run_as"])
    outcomes = parse_files(
        Path(request["root"]),
        list(request["files"]),
        float(request["timeout_s"]),
        int(request["concurrency"]),
    )
    _write_all(protocol, json.dumps({"files": outcomes}).encode())
    os.close(protocol)


if __name__ == "__main__":
    main()
