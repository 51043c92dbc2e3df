"""What a process that imports DAG files imports ahead, before it forks: module names only.

The DAG processor's parse child and the warm-process pool's forkserver import these once, so
every child forked from them starts warm and shares their pages. All of them: with
`run_as_user` a child imports its DAG file as a user who may not be able to read drayman's
installation (nor the standard library) to import them then. Names, not imports: the process
that owns a pool (the scheduler, `drayman worker`) never imports the authoring API itself.
"""

from __future__ import annotations

# What defining a DAG imports (`from drayman import DAG, task, ...` and what that pulls in).
DAG_MODULES = (
    "drayman",
    "drayman.authoring.context",
    "drayman.authoring.dag",
    "drayman.authoring.decorator",
    "drayman.authoring.params",
    "drayman.authoring.tasks",
    "drayman.authoring.serialize",
    "drayman.authoring.shell_arguments",
    "drayman.authoring.shell_references",
    "drayman.authoring.templating",
    "drayman.timetables",
    "jinja2.sandbox",
)

# The warm process's own module, by name: see `drayman.runner.protocol.enter_warm_process`.
WARM_PROCESS_MODULE = "drayman.runner.worker"

# What the pool's forkserver imports before it forks a warm process.
WARM_PROCESS_PRELOAD = (WARM_PROCESS_MODULE, *DAG_MODULES)
