"""`import drayman` stays light: every DAG file and `drayman --version` pay for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")

PROBE = """
import json, sys
import drayman
print(json.dumps(sorted(sys.modules)))
"""


def test_import_pulls_in_neither_sqlalchemy_nor_jinja2() -> None:
    output = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": SRC},
    ).stdout
    heavy = [
        name
        for name in json.loads(output)
        if name.split(".")[0] in {"sqlalchemy", "jinja2", "alembic", "click"}
        or name in {"drayman.timetables", "drayman.authoring.templating"}
    ]
    assert heavy == []
