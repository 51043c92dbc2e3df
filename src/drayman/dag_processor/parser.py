"""Turning an extracted bundle into serialized DAGs without running user code here.

`parse_bundle` starts one fresh interpreter (`drayman.dag_processor.parse_child`) per bundle; that
process forks one child per DAG file with a time limit, so a file that hangs, exits or crashes
costs only its own DAGs. The calling process (the scheduler, the CLI) only reads files and
JSON: it never imports anything from the bundle.
"""

from __future__ import annotations

import json
import logging
import math
import os
import site
import subprocess
import sys
import time
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import drayman.bundles
from drayman.config import hide_secrets
from drayman.dag_processor.parse_child import candidate_files
from drayman.exceptions import BundleError
from drayman.runner.isolation import RunAs, resolve_run_as
from drayman.spec import DagSpec, ImportFailure, ParsedDag

logger = logging.getLogger(__name__)

MAX_CONCURRENCY = 8
# beyond the per-file limits the child enforces: interpreter start-up and drayman's imports
_STARTUP_S = 30.0


@dataclass(frozen=True)
class ParseResult:
    """What one bundle defines: its DAGs, the files that failed, and how long it took."""

    dags: list[ParsedDag]
    errors: list[ImportFailure]
    duration_s: float


def parse_bundle(bundle_dir: Path, *, timeout_s: float, run_as_user: str = "") -> ParseResult:
    """Parse every DAG file of an extracted bundle, each import limited to `timeout_s`.

    With `run_as_user` (the `run_as_user` setting), the parser process runs as that user, as
    tries do: a DAG file's top level is the author's code too, and as drayman's user it could
    read `/proc/<scheduler>/environ` and the secret key file.
    """
    started = time.monotonic()
    root = bundle_dir.resolve()
    files = candidate_files(root)
    dags: list[ParsedDag] = []
    errors: list[ImportFailure] = []
    if files:
        outcomes = _run_parse_child(root, files, timeout_s, resolve_run_as(run_as_user))
        dags, errors = _collect(root, outcomes)
    return ParseResult(dags=dags, errors=errors, duration_s=time.monotonic() - started)


def _run_parse_child(
    root: Path, files: list[str], timeout_s: float, run_as: RunAs | None
) -> list[dict[str, Any]]:
    concurrency = _concurrency(len(files))
    request: dict[str, Any] = {
        "root": str(root),
        "files": files,
        "timeout_s": timeout_s,
        "concurrency": concurrency,
    }
    overall = overall_timeout(len(files), timeout_s, concurrency)
    command = [sys.executable, "-P", "-m", "drayman.dag_processor.parse_child"]
    if run_as is not None:  # it switches once drayman's own modules are imported
        request["run_as"] = run_as.name
    with subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_child_env(),
    ) as proc:
        try:
            out, err = proc.communicate(json.dumps(request).encode(), timeout=overall)
        except subprocess.TimeoutExpired:
            _stop(proc)
            raise BundleError(
                f"parsing the bundle at {root} took longer than {overall:.0f} s in all; "
                "the DAG parser process was stopped"
            ) from None
    if err:
        logger.debug("parse.stderr bundle=%s %s", root.name[:12], err.decode(errors="replace"))
    return _response(proc.returncode, out, err)


def overall_timeout(files: int, timeout_s: float, concurrency: int) -> float:
    """The parse child enforces each file's limit; this only guards against it stalling."""
    return timeout_s * (math.ceil(files / concurrency) + 1) + _STARTUP_S


def _response(returncode: int, out: bytes, err: bytes) -> list[dict[str, Any]]:
    if returncode == 0:
        try:
            files: list[dict[str, Any]] = json.loads(out)["files"]
            return files
        except (ValueError, KeyError, TypeError):
            pass
    tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    raise BundleError(
        f"the DAG parser process failed (exit code {returncode}): {tail[0]}; "
        "this is a drayman bug, please report it"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM first: the parse child then kills its own children's process groups."""
    proc.terminate()
    try:
        proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def _child_env() -> dict[str, str]:
    """The caller's environment, with drayman importable even when run from a source tree.

    An installed drayman (site-packages, or an editable install's .pth) is found by the
    child as it is here; its directory is not put on PYTHONPATH, where it would come before
    the standard library.
    """
    env = dict(os.environ)
    hide_secrets(env)  # DAG files are the author's code, like tasks
    package_parent = str(Path(drayman.bundles.__file__).resolve().parents[2])
    installed = {str(Path(p).resolve()) for p in [*site.getsitepackages(), site.USER_SITE] if p}
    if package_parent not in installed:
        parts = [package_parent, env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
    return env


def _concurrency(files: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(files, cpus, MAX_CONCURRENCY))


def _collect(
    root: Path, outcomes: Iterable[dict[str, Any]]
) -> tuple[list[ParsedDag], list[ImportFailure]]:
    """DAGs and failures in file order; a DAG id already taken makes the later file fail."""
    dags: list[ParsedDag] = []
    errors: list[ImportFailure] = []
    defined_in: dict[str, str] = {}
    for outcome in outcomes:
        fileloc = outcome["fileloc"]
        if outcome["error"] is not None:
            error = outcome["error"]
            errors.append(ImportFailure(fileloc, error["lineno"], error["message"]))
            continue
        source = _read_source(root / fileloc)
        for data in outcome["specs"]:
            spec = DagSpec.from_dict(data)
            if spec.dag_id in defined_in:
                errors.append(_duplicate(spec.dag_id, fileloc, defined_in[spec.dag_id], source))
                continue
            defined_in[spec.dag_id] = fileloc
            dags.append(ParsedDag(spec=spec, source=source))
    return dags, errors


def _duplicate(dag_id: str, fileloc: str, first: str, source: str) -> ImportFailure:
    where = "earlier in this file" if first == fileloc else f"in {first}"
    return ImportFailure(
        fileloc=fileloc,
        lineno=_line_mentioning(source, dag_id),
        message=f"DAG {dag_id!r} is already defined {where}",
    )


def _line_mentioning(source: str, dag_id: str) -> int | None:
    """Best guess at where a DAG id is written: the first line quoting it."""
    quoted = (f'"{dag_id}"', f"'{dag_id}'")
    for number, line in enumerate(source.splitlines(), start=1):
        if any(q in line for q in quoted):
            return number
    return None


def _read_source(path: Path) -> str:
    """The file's code as Python reads it (honouring a coding cookie)."""
    try:
        with tokenize.open(path) as handle:
            return handle.read()
    except (SyntaxError, UnicodeDecodeError):
        return path.read_text(encoding="utf-8", errors="replace")
