"""Where the example DAGs keep their files and their warehouse: under DRAYMAN_HOME."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir(*parts: str) -> Path:
    """A folder under $DRAYMAN_HOME/example_data, created on first use."""
    home = Path(os.environ.get("DRAYMAN_HOME", ".drayman")).resolve()
    path = home.joinpath("example_data", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def warehouse_path() -> Path:
    return data_dir() / "warehouse.sqlite"
