"""Every Shell command the project shows (bundled examples, the README's DAG) is safe to
trigger with hostile conf: no value's text enters the script, each is an argument of bash."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drayman.authoring.context import Context
from drayman.authoring.dag import DAG
from drayman.authoring.tasks import ShellTask
from drayman.runner.loader import load_dag, unload_all

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "src" / "drayman" / "examples" / "dags"
MARK = "PWNED"
HOSTILE = f"x'\"; touch {MARK} $(touch {MARK}) `touch {MARK}` * ~ \\\n&& touch {MARK} #"


@pytest.fixture(autouse=True)
def _unload() -> Iterator[None]:
    yield
    unload_all()  # this process is pytest's: leave no bundle on its sys.path


def _readme_bundle(tmp_path: Path) -> Path:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"```python\n(# dags/sales\.py\n.*?)```", readme, re.DOTALL)
    assert found, "the README's DAG (a python block starting with '# dags/sales.py') moved"
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "sales.py").write_text(found.group(1))
    return tmp_path


def _dags(tmp_path: Path) -> list[DAG]:
    files = sorted(EXAMPLES.glob("*.py"))
    assert len(files) >= 4
    # each example DAG's id is its file's name
    dags = [load_dag(EXAMPLES, path.name, path.stem) for path in files]
    return [*dags, load_dag(_readme_bundle(tmp_path), "dags/sales.py", "sales_daily")]


def _hostile_context(dag: DAG, shell: ShellTask) -> Context:
    """Every param, every conf key the task's templates name, and the run id: hostile."""
    templates = " ".join([shell.command, *shell.env.values(), shell.cwd or ""])
    conf_keys = re.findall(r"conf(?:\.get\(|\[|\.)\s*['\"]?(\w+)", templates)
    moment = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    return Context(
        dag_id=dag.dag_id,
        run_id=HOSTILE,
        task_id=shell.task_id,
        map_index=-1,
        try_number=1,
        max_tries=1,
        run_type="manual",
        logical_date=moment,
        data_interval_start=moment,
        data_interval_end=moment,
        timezone="UTC",
        bundle_version="ab" * 32,
        params={name: HOSTILE for name in dag.params},
        conf={key: HOSTILE for key in conf_keys},
    )


def test_every_example_shell_command_passes_hostile_values_as_arguments(tmp_path: Path) -> None:
    checked = 0
    for dag in _dags(tmp_path):
        for shell in dag.tasks.values():
            if not isinstance(shell, ShellTask):
                continue
            ctx = _hostile_context(dag, shell)
            command, _env, _cwd = shell.render(ctx)
            where = f"{dag.dag_id}.{shell.task_id}: {command!r}"
            assert MARK not in command.script, where
            if re.search(r"params|conf|run_id", shell.command):
                assert HOSTILE in command.args, where
            checked += 1
    assert checked >= 4  # sales_daily.report, shell_pipeline.prepare/count, README's extract
