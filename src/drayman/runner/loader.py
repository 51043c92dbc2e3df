"""Import DAG files once per warm worker process, so every try after the first is only a fork.

A worker may run tries of several bundle versions. Each version's files are imported under a
module name of their own, and the helper modules a bundle imports by plain name (`import
helpers`) are swapped in and out of `sys.modules` with the bundle: version 2's tries never see
version 1's `helpers`, even though both live in one process.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import sys
from hashlib import sha1
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from drayman.exceptions import DraymanError

if TYPE_CHECKING:
    from drayman.authoring.dag import DAG
    from drayman.authoring.tasks import Task


class LoadError(DraymanError):
    """A DAG file that cannot be imported, or no longer defines the DAG or task a try names."""


# Per process on purpose: this is an import cache, like sys.modules itself.
_dags: dict[tuple[Path, str], dict[str, DAG]] = {}
_parked: dict[Path, dict[str, ModuleType]] = {}  # helper modules of inactive bundles
_active: list[Path] = []  # at most one: the bundle whose root is on sys.path
_roots: dict[Path, Path] = {}  # bundle dir as given -> resolved


def load_dag(bundle_dir: Path, fileloc: str, dag_id: str) -> DAG:
    """The DAG `dag_id` defined by `fileloc` (relative to `bundle_dir`), imported at most once."""
    root = _resolved(bundle_dir)
    activate_bundle(root)
    dags = _dags.get((root, fileloc))
    if dags is None:
        dags = _import_file(root, fileloc)
        _dags[(root, fileloc)] = dags
    dag = dags.get(dag_id)
    if dag is None:
        defined = ", ".join(sorted(dags)) or "none"
        raise LoadError(
            f"{fileloc} no longer defines DAG {dag_id!r} (it defines: {defined}); "
            "was the DAG renamed or moved to another file?"
        )
    return dag


def load_task(bundle_dir: Path, fileloc: str, dag_id: str, task_id: str) -> tuple[DAG, Task]:
    """The DAG and its task `task_id`, or a LoadError that names both."""
    dag = load_dag(bundle_dir, fileloc, dag_id)
    try:
        return dag, dag.get_task(task_id)
    except (LookupError, DraymanError):
        raise LoadError(f"DAG {dag_id!r} in {fileloc} no longer has a task {task_id!r}") from None


def unload_all() -> None:
    """Forget every imported DAG file and take bundles off `sys.path` (for tests)."""
    if _active:
        root = _active.pop()
        _take_modules_under(root)
        _remove_path(root)
    _parked.clear()
    _dags.clear()
    _roots.clear()


def activate_bundle(root: Path) -> None:
    """Make `root` the bundle that plain imports resolve to, parking the previous one's modules.

    Called on every load, before the try's child is forked: the child inherits the active
    bundle, so a task that imports a helper lazily (inside its function) gets its own version's.
    """
    if _active and _active[0] == root:
        return
    if _active:
        previous = _active.pop()
        _parked[previous] = _take_modules_under(previous)
        _remove_path(previous)
    sys.modules.update(_parked.pop(root, {}))
    sys.path.insert(0, str(root))
    _active.append(root)


def _resolved(bundle_dir: Path) -> Path:
    # resolve() costs a syscall per path component, on every try: remember it.
    root = _roots.get(bundle_dir)
    if root is None:
        root = _roots[bundle_dir] = bundle_dir.resolve()
    return root


def _import_file(root: Path, fileloc: str) -> dict[str, DAG]:
    from drayman.authoring.dag import collect_dags, reset_registry

    path = root / fileloc
    if not path.is_file():
        raise LoadError(f"{fileloc} is not in bundle {root.name}: was the file deleted or renamed?")
    name = _module_name(root, fileloc)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"{fileloc}: not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    # Registered before running, like a normal import: dataclasses and pickle look it up.
    sys.modules[name] = module
    reset_registry()
    try:
        spec.loader.exec_module(module)
        found = collect_dags()
    except BaseException as exc:
        sys.modules.pop(name, None)
        raise LoadError(f"{fileloc}: import failed: {type(exc).__name__}: {exc}") from exc
    finally:
        reset_registry()
    # The imported code lives as long as this process: out of the collector's sight, a forked
    # try's garbage collections never touch (and so never copy) its pages.
    gc.freeze()
    return {dag.dag_id: dag for dag in found}


def _module_name(root: Path, fileloc: str) -> str:
    # Unique per bundle version and file, so two versions of dags/sales.py never collide.
    digest = sha1(f"{root}\0{fileloc}".encode(), usedforsecurity=False).hexdigest()[:12]
    stem = "".join(c if c.isalnum() else "_" for c in fileloc.removesuffix(".py"))
    return f"drayman_bundle_{digest}_{stem}"


def _take_modules_under(root: Path) -> dict[str, ModuleType]:
    prefix = str(root) + os.sep
    taken = {
        name: module for name, module in list(sys.modules.items()) if _is_under(module, prefix)
    }
    for name in taken:
        del sys.modules[name]
    return taken


def _is_under(module: ModuleType, prefix: str) -> bool:
    file = getattr(module, "__file__", None)
    if file:
        return str(file).startswith(prefix)
    # Namespace packages (a folder without __init__.py) have no __file__, only a __path__.
    try:
        return any(str(entry).startswith(prefix) for entry in getattr(module, "__path__", ()))
    except Exception:  # some extension modules answer attribute access oddly
        return False


def _remove_path(root: Path) -> None:
    text = str(root)
    sys.path[:] = [entry for entry in sys.path if entry != text]
    sys.path_importer_cache.pop(text, None)
