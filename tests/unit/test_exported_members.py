"""The public API is exactly `drayman.__all__`: adding a public name is a deliberate act."""

from __future__ import annotations

import types

import drayman


def test_all_public_names_are_exported() -> None:
    public = {
        name
        # dir(): the names are imported on first use (PEP 562), so vars() lacks them at first.
        for name in dir(drayman)
        # Subpackages become attributes once imported; they are not part of the API.
        if (not name.startswith("_") or name == "__version__")
        and not isinstance(getattr(drayman, name), types.ModuleType)
    }
    assert sorted(drayman.__all__) == sorted(public)
    assert set(drayman.__all__) == {"DAG", "Param", "Shell", "task", "Context", "__version__"}


def test_version() -> None:
    assert drayman.__version__ == "0.1.0"
