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

__version__ = "0.1.0"

__all__ = ["DAG", "Context", "Param", "Shell", "__version__", "task"]
