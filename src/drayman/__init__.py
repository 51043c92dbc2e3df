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

__version__ = "0.1.0"

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
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'drayman' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # the next lookup skips this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
