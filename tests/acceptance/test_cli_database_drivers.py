"""A database URL whose driver is not installed: one line naming the extra to install.

The driver is made missing for real: the CLI runs as a subprocess whose `sitecustomize`
refuses to import it (as a Python without the package would), or the URL names a driver
that is not installed here at all.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from support.cli import Drayman

BLOCKER = """
import sys


class _NotInstalled:
    # behaves as if these packages were not installed in this Python
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
"""


def without_modules(d: Drayman, tmp_path: Path, *modules: str) -> None:
    """Make `modules` unimportable in every drayman process `d` starts."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER.format(blocked=set(modules)))
    d.env["PYTHONPATH"] = str(site)


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        ("postgresql+psycopg://postgres:s3cret@127.0.0.1:5432/drayman", "psycopg", "postgresql"),
        ("mysql+pymysql://root:s3cret@127.0.0.1:3306/drayman", "pymysql", "mysql"),
    ],
)
@pytest.mark.parametrize("command", [("db", "migrate"), ("dags", "list")])
def test_a_missing_driver_names_the_extra_to_install(
    make_drayman: Callable[..., Drayman],
    tmp_path: Path,
    url: str,
    module: str,
    extra: str,
    command: tuple[str, ...],
) -> None:
    d = make_drayman("no-driver", database_url=url)
    without_modules(d, tmp_path, module)
    proc = d.cli(*command)
    assert proc.returncode == 2, d.last
    assert "Traceback" not in proc.stderr, d.last
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line:\n{d.last}"
    assert f"pip install 'drayman[{extra}]'" in lines[0], d.last
    assert module in lines[0], d.last
    assert "s3cret" not in proc.stderr, f"the password leaked:\n{d.last}"


def test_the_sitecustomize_really_blocks_the_driver(
    make_drayman: Callable[..., Drayman], tmp_path: Path
) -> None:
    """The blocker above works: without it these tests would pass for the wrong reason."""
    d = make_drayman("no-driver-check")
    without_modules(d, tmp_path, "psycopg")
    proc = subprocess.run(
        [sys.executable, "-c", "import psycopg"],
        env=d.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0 and "No module named 'psycopg'" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("url", "module", "use"),
    [
        ("mysql+mysqldb://root@127.0.0.1:3306/drayman", "MySQLdb", "mysql+pymysql://"),
        ("postgresql+asyncpg://postgres@127.0.0.1/drayman", "asyncpg", "postgresql+psycopg://"),
    ],
)
def test_a_driver_drayman_does_not_ship_says_which_to_use(
    make_drayman: Callable[..., Drayman], url: str, module: str, use: str
) -> None:
    d = make_drayman("other-driver", database_url=url)
    proc = d.cli("dags", "list")
    assert proc.returncode == 2, d.last
    assert "Traceback" not in proc.stderr, d.last
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line:\n{d.last}"
    assert module in lines[0] and use in lines[0], d.last
