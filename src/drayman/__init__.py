"""drayman: an orchestrator for ETL workflows. This is the API a DAG file uses.

    from drayman import DAG, task, Shell, Param

Kept light on purpose: importing it pulls in neither SQLAlchemy nor Jinja, so `drayman --version`
and the import of every DAG file stay fast.
"""

from drayman.authoring.context import Context
from drayman.authoring.dag import DAG
from drayman.authoring.decorator import task
from drayman.authoring.params import Param
from drayman.authoring.tasks import Shell

__all__ = ["DAG", "Context", "Param", "Shell", "__version__", "task"]


def __getattr__(name: str) -> str:
    """`__version__`: the installed package's, from its metadata (pyproject.toml's version,
    the one place it is written). Read on first use, since importing importlib.metadata costs
    tens of milliseconds that a DAG file's import need not pay."""
    if name == "__version__":
        return _installed_version()
    raise AttributeError(f"module 'drayman' has no attribute {name!r}")


def _installed_version() -> str:
    from importlib.metadata import version

    return version("drayman")
