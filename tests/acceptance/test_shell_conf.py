"""The bundled shell example, run through the real CLI with a hostile run conf: the conf is
printed, never run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from drayman import examples

if TYPE_CHECKING:
    from support.cli import Drayman

SHELL_PIPELINE = Path(examples.__file__).parent / "dags" / "shell_pipeline.py"


def test_a_hostile_greeting_is_written_as_text(drayman: Drayman) -> None:
    d = drayman
    shutil.copy(SHELL_PIPELINE, d.dags / "shell_pipeline.py")
    pwned = d.root / "pwned"
    greeting = (
        f"hi'; touch {pwned}; echo '\" $(touch {pwned}) `touch {pwned}` && touch {pwned} *\n"
        f"touch {pwned}"
    )
    out = d.root / "out"
    conf = json.dumps({"greeting": greeting, "out": str(out)})
    proc = d.cli("dags", "test", "shell_pipeline", "--conf", conf)
    assert proc.returncode == 0, d.last
    (note,) = out.glob("*/note.txt")
    text = note.read_text()
    assert text.startswith(f"{greeting} from 20") and text.endswith("\n"), text
    assert not pwned.exists()
