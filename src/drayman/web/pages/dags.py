"""The DAGs page ("/") and a DAG's page ("/dags/{dag_id}"), with the live-update JSON of its
grid (grid.json) and of its graph's states (graph.json).

The DAG page shows, for the latest N runs only (25 by default, 50 at most, never the whole
history): the grid, the task-duration chart; for one chosen run (the newest by default): the
graph coloured by its states and the DAG file's code at its bundle version; then the next
runs with DST changes marked, and a filtered, paged run list.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse

from drayman.auth.users import User
from drayman.exceptions import DraymanError, NotFoundError
from drayman.spec import DagSpec
from drayman.states import RUN_FINISHED
from drayman.store import bundles as bundle_store
from drayman.store import dags as dag_store
from drayman.store import history
from drayman.store import pages as page_store
from drayman.store import runs as run_store
from drayman.store.engine import Connection
from drayman.timetables import parse_schedule
from drayman.web import reads
from drayman.web.pages import conf_form, durations, graph, grid
from drayman.web.pages.render import page, u
from drayman.web.params import Offset, utc_instant
from drayman.web.security import current_user
from drayman.web.state import web_state

router = APIRouter()

DAGS_PER_PAGE = 50
RECENT_RUNS = 10
GRID_DEFAULT = 25
GRID_MAX = 50
RUNS_PER_PAGE = 25
NEXT_RUNS = 5
RUN_STATES = ("queued", "running", "success", "failed")

CurrentUser = Annotated[User, Depends(current_user)]


@router.get("/", response_class=HTMLResponse)
def dags_list(
    request: Request,
    user: CurrentUser,
    q: str = "",
    tag: str = "",
    paused: str = "",
    offset: Offset = 0,
) -> HTMLResponse:
    """Every DAG: schedule in its timezone, next run local and UTC, recent run states."""
    store = web_state(request).store
    paused_filter = {"yes": True, "no": False}.get(paused)
    with store.read() as conn:
        found = history.page_dags(
            conn,
            tag=tag[:250] or None,
            search=q[:250] or None,
            paused=paused_filter,
            limit=DAGS_PER_PAGE,
            offset=offset,
        )
        recent = history.recent_runs(conn, [r.dag_id for r in found.rows], RECENT_RUNS)
        errors = _import_errors(conn)
    dags = [_dag_item(row, recent.get(row.dag_id, [])) for row in found.rows]
    return page(
        request,
        user,
        "dags.html",
        dags=dags,
        errors=errors,
        total=found.total,
        offset=offset,
        limit=DAGS_PER_PAGE,
        q=q,
        tag=tag,
        paused=paused,
    )


def _import_errors(conn: Connection) -> list[Any]:
    version = bundle_store.latest_deployed_version(conn)
    return dag_store.import_errors(conn, version) if version else []


def _dag_item(row: Any, recent: list[Any]) -> dict[str, Any]:
    return {
        "row": row,
        "tags": json.loads(row.tags or "[]"),
        "schedule": _describe(row.schedule, row.timezone),
        "recent": list(reversed(recent)),  # oldest first, newest at the right
    }


def _describe(schedule: str | None, timezone: str) -> str:
    try:
        return parse_schedule(schedule, timezone).describe()
    except DraymanError:
        return schedule or "manual"


@router.get("/dags/{dag_id}", response_class=HTMLResponse)
def dag_page(
    request: Request,
    dag_id: str,
    user: CurrentUser,
    runs: int = GRID_DEFAULT,
    run_id: str = "",
    state: str = "",
    since: str = "",
    until: str = "",
    offset: Offset = 0,
) -> HTMLResponse:
    store = web_state(request).store
    count = min(max(runs, 1), GRID_MAX)
    state = state if state in RUN_STATES else ""
    start, end = _day(since), _day(until)
    with store.read() as conn:
        row = dag_store.get_dag(conn, dag_id)
        spec = dag_store.load_spec(conn, dag_id, row.bundle_version)
        columns = page_store.latest_runs(conn, dag_id, count)
        tis = page_store.task_instances_of(conn, [c.id for c in columns])
        chosen = _chosen_run(conn, dag_id, run_id, columns)
        chosen_spec, code = _code_at(conn, dag_id, chosen, spec, row.bundle_version)
        in_grid = chosen is None or any(c.id == chosen.id for c in columns)
        chosen_tis = tis if in_grid else page_store.task_instances_of(conn, [chosen.id])
        listed = history.page_runs(
            conn,
            dag_id,
            state=state or None,
            since=start,
            until=end,
            limit=RUNS_PER_PAGE,
            offset=offset,
        )
    the_grid = grid.build(columns, tis, spec)
    states = _states_of(chosen, chosen_tis)
    return page(
        request,
        user,
        "dag.html",
        dag=row,
        spec=spec,
        tags=json.loads(row.tags or "[]"),
        schedule=_describe(row.schedule, row.timezone),
        grid=the_grid,
        grid_runs=count,
        durations=durations.chart(the_grid, tis),
        chosen=chosen,
        graph=graph.layout(chosen_spec),
        graph_states=states,
        graph_src=_graph_src(dag_id, chosen),
        code=code,
        code_version=chosen.bundle_version if chosen else row.bundle_version,
        next_runs=_next_runs(spec),
        runs=listed,
        run_filter={"state": state, "since": since, "until": until},
        run_states=RUN_STATES,
        offset=offset,
        per_page=RUNS_PER_PAGE,
        fields=conf_form.fields(spec.params),
    )


def _day(text: str) -> datetime | None:
    """A date filter (YYYY-MM-DD, or a full ISO time); anything else is ignored."""
    if not text:
        return None
    try:
        return utc_instant(datetime.fromisoformat(text[:40]))
    except ValueError:  # not a date, or none UTC can hold (9999-12-31T23:00-05:00)
        return None


def _chosen_run(conn: Connection, dag_id: str, run_id: str, columns: list[Any]) -> Any:
    if run_id:
        for column in columns:
            if column.run_id == run_id:
                return column
        return run_store.get_run(conn, dag_id, run_id)
    return columns[0] if columns else None


def _code_at(
    conn: Connection, dag_id: str, run: Any, newest: DagSpec, newest_version: str
) -> tuple[DagSpec, str]:
    """The spec and code at the run's bundle version (a run pinned an older one, maybe)."""
    version = run.bundle_version if run is not None else newest_version
    try:
        spec = newest if version == newest_version else dag_store.load_spec(conn, dag_id, version)
        return spec, dag_store.load_source(conn, dag_id, version)
    except NotFoundError:
        return newest, ""


def _states_of(run: Any, tis: list[Any]) -> dict[str, str]:
    if run is None:
        return {}
    cells = grid.build([run], [t for t in tis if t.dag_run_id == run.id], None).cells
    return {task_id: cell.state for (_, task_id), cell in cells.items()}


def _graph_src(dag_id: str, run: Any) -> str:
    """Where the page's script polls the chosen run's states; "" when they cannot change."""
    if run is None or run.state in RUN_FINISHED:
        return ""
    return f"/dags/{u(dag_id)}/graph.json?run_id={u(run.run_id)}"


def _next_runs(spec: DagSpec) -> list[dict[str, Any]]:
    try:
        return reads.next_runs(spec, datetime.now(UTC), NEXT_RUNS)
    except DraymanError:
        return []


@router.get("/dags/{dag_id}/grid.json")
def grid_json(request: Request, dag_id: str, user: CurrentUser, runs: int = GRID_DEFAULT) -> Any:
    """The grid as data, for the page's script to redraw it while runs progress."""
    store = web_state(request).store
    count = min(max(runs, 1), GRID_MAX)
    with store.read() as conn:
        row = dag_store.get_dag(conn, dag_id)
        spec = dag_store.load_spec(conn, dag_id, row.bundle_version)
        columns = page_store.latest_runs(conn, dag_id, count)
        tis = page_store.task_instances_of(conn, [c.id for c in columns])
    the_grid = grid.build(columns, tis, spec)
    body = grid.to_json(
        the_grid,
        lambda rid: f"/dags/{u(dag_id)}/runs/{u(rid)}",
        lambda try_id: f"/tries/{try_id}",
    )
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.get("/dags/{dag_id}/graph.json")
def graph_json(request: Request, dag_id: str, run_id: str, user: CurrentUser) -> Any:
    """One run's task states, for the page's script to recolour the graph while the run
    progresses; `finished` tells it to stop polling. A task without an instance yet is absent
    (the graph draws it as "none"); a mapped task has the state that most needs attention."""
    store = web_state(request).store
    with store.read() as conn:
        run = run_store.get_run(conn, dag_id, run_id)
        tis = page_store.task_instances_of(conn, [run.id])
    body = {
        "run_id": run.run_id,
        "state": run.state,
        "finished": run.state in RUN_FINISHED,
        "states": _states_of(run, tis),
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
