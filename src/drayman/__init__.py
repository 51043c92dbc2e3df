"""drayman: an orchestrator for ETL workflows. This is the API a DAG file uses.

    from drayman import DAG, task, Shell, Param

Kept light on purpose: importing it pulls in neither SQLAlchemy nor Jinja, so `drayman --version`
and the import of every DAG file stay fast. The names are imported on first use (PEP 562): a
process that imports only `drayman.<package>` (the scheduler, the web app, an executor) never
imports the authoring API.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from drayman.authoring.context import Context
    from drayman.authoring.dag import DAG
    from drayman.authoring.decorator import task
    from drayman.authoring.params import Param
    from drayman.authoring.tasks import Shell

    __version__: str

__all__ = ["DAG", "Context", "Param", "Shell", "__version__", "task"]

# Each public name and the module that defines it.
_LAZY = {
    "Context": "drayman.authoring.context",
    "DAG": "drayman.authoring.dag",
    "Param": "drayman.authoring.params",
    "Shell": "drayman.authoring.tasks",
    "task": "drayman.authoring.decorator",
}


def __getattr__(name: str) -> object:
    """The authoring names, imported on first use; `__version__`, the installed package's from
    its metadata (pyproject.toml's version, the one place it is written), read on first use
    since importing importlib.metadata costs tens of milliseconds a DAG file's import need not
    pay."""
    if name == "__version__":
        return _installed_version()
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'drayman' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # the next lookup skips this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def _installed_version() -> str:
    from importlib.metadata import version

    return version("drayman")
