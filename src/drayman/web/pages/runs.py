"""A run's page ("/dags/{dag_id}/runs/{run_id}"): its Gantt chart, tasks, conf and origin.

While the run is unfinished the page's script asks `live.json` every couple of seconds for
the part that changes (state, Gantt, task table), rendered here, and swaps it in place.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse

from drayman.auth.users import User
from drayman.exceptions import NotFoundError
from drayman.store import dags as dag_store
from drayman.store import runs as run_store
from drayman.store import try_history
from drayman.web.pages import gantt
from drayman.web.pages.grid import task_order
from drayman.web.pages.render import fragment, page, permissions
from drayman.web.security import current_user
from drayman.web.state import web_state

router = APIRouter()

CurrentUser = Annotated[User, Depends(current_user)]


def _load(request: Request, dag_id: str, run_id: str) -> dict[str, Any]:
    store = web_state(request).store
    with store.read() as conn:
        dag = dag_store.get_dag(conn, dag_id)
        run = run_store.get_run(conn, dag_id, run_id)
        tries = try_history.tries_of_run(conn, run.id)
        try:
            task_ids = task_order(dag_store.load_spec(conn, dag_id, run.bundle_version))
        except NotFoundError:
            task_ids = sorted({t.task_id for t in tries})
    now = datetime.now(UTC)
    return {
        "dag": dag,
        "run": run,
        "conf": json.dumps(json.loads(run.conf or "{}"), indent=2, sort_keys=True),
        "params": json.dumps(json.loads(run.params or "{}"), indent=2, sort_keys=True),
        "gantt": gantt.chart(tries, now),
        "task_instances": _task_instances(tries),
        "task_ids": task_ids,
        "now": now,
        "unfinished": run.state in ("queued", "running"),
    }


def _task_instances(tries: list[Any]) -> list[dict[str, Any]]:
    """One entry per task instance with its tries, in the order the run lists them."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for row in tries:
        ti = found.setdefault(
            (row.task_id, row.map_index),
            {
                "task_id": row.task_id,
                "map_index": row.map_index,
                "state": row.ti_state,
                "tries": [],
            },
        )
        if row.try_number is not None:
            ti["tries"].append(row)
    return list(found.values())


@router.get("/dags/{dag_id}/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, dag_id: str, run_id: str, user: CurrentUser) -> HTMLResponse:
    return page(request, user, "run.html", **_load(request, dag_id, run_id))


@router.get("/dags/{dag_id}/runs/{run_id}/live.json")
def run_live(request: Request, dag_id: str, run_id: str, user: CurrentUser) -> JSONResponse:
    """The changing part of the run page, rendered, and whether to keep asking."""
    context = _load(request, dag_id, run_id)
    html = fragment(request, "run_live.html", user=user, can=permissions(user), **context)
    return JSONResponse(
        {"html": html, "unfinished": context["unfinished"], "state": context["run"].state},
        headers={"Cache-Control": "no-store"},
    )
