"""The public API is exactly `drayman.__all__`: adding a public name is a deliberate act."""

from __future__ import annotations

import tomllib
import types
from pathlib import Path

import drayman

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_all_public_names_are_exported() -> None:
    public = {
        name
        # dir(): the names are imported on first use (PEP 562), so vars() lacks them at first.
        for name in dir(drayman)
        # Subpackages become attributes once imported; they are not part of the API.
        if not name.startswith("_") and not isinstance(getattr(drayman, name), types.ModuleType)
    }
    # __version__ is read on first use (the module's __getattr__), so it is not in vars()
    assert sorted(drayman.__all__) == sorted([*public, "__version__"])
    assert set(drayman.__all__) == {"DAG", "Param", "Shell", "task", "Context", "__version__"}


def test_the_version_is_the_one_pyproject_toml_gives() -> None:
    written = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    assert drayman.__version__ == written, "the installed drayman is stale: pip install -e ."
