"""What a person does from the pages: trigger, pause/unpause, clear, mark, cancel. POST only.

Each route names its action with `require(Action.X)`, so a viewer is refused (403) whatever
the page showed, and `security.caller` checks the form's CSRF token before the handler runs.
The object acted on comes from the URL; the form only says how (which task, which options).
Clearing, marking and cancelling change state for good, so the first POST changes nothing:
it shows what would change (a dry run) with a button that posts again with `confirmed=1`.
After any change the scheduler's doorbell rings, so it acts at once instead of at its next
poll.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from drayman import run_creation
from drayman.auth.roles import Action
from drayman.auth.users import User
from drayman.conf import ConfLimits
from drayman.exceptions import ParamsError, RunIdError
from drayman.states import TIState
from drayman.store import actions as store_actions
from drayman.store import audit
from drayman.store import dags as dag_store
from drayman.store.actions import TIKey
from drayman.store.audit import Actor, AuditAction
from drayman.store.engine import Connection
from drayman.web.pages import conf_form
from drayman.web.pages.render import page, u
from drayman.web.security import actor, audit_actor, require
from drayman.web.state import WebState, web_state

router = APIRouter()

MAX_TASK_ID = 250


def _run_url(dag_id: str, run_id: str) -> str:
    return f"/dags/{u(dag_id)}/runs/{u(run_id)}"


def _back(form: FormData, default: str) -> str:
    """Where to go after the action: a path on this site from the form, else `default`."""
    target = str(form.get("next", "") or "")
    parts = urlsplit(target)
    if not target.startswith("/") or target.startswith("//") or parts.scheme or parts.netloc:
        return default
    return target


def _flag(form: FormData, name: str) -> bool:
    return str(form.get(name, "")) in {"1", "true", "on", "yes"}


# -- trigger ---------------------------------------------------------------------------------


@router.get("/dags/{dag_id}/trigger", response_class=HTMLResponse)
async def trigger_form(
    request: Request, dag_id: str, user: Annotated[User, Depends(require(Action.TRIGGER))]
) -> Response:
    """The trigger form, generated from the DAG's params."""
    spec = await run_in_threadpool(_newest_spec, web_state(request), dag_id)
    return page(request, user, "trigger.html", dag_id=dag_id, fields=conf_form.fields(spec.params))


def _newest_spec(state: WebState, dag_id: str) -> Any:
    with state.store.read() as conn:
        row = dag_store.get_dag(conn, dag_id)
        return dag_store.load_spec(conn, dag_id, row.bundle_version)


@router.post("/dags/{dag_id}/trigger")
async def trigger(
    request: Request, dag_id: str, user: Annotated[User, Depends(require(Action.TRIGGER))]
) -> Response:
    """Create a manual run with the form's conf (and `run_id`, if given); show the form again,
    with the error, if the conf does not fit the DAG's params or the run id is refused."""
    state = web_state(request)
    form = await request.form()
    spec = await run_in_threadpool(_newest_spec, state, dag_id)
    limits = ConfLimits.of(state.settings)
    run_id = str(form.get("run_id", "") or "").strip() or None
    try:
        conf = conf_form.conf_from_form(spec.params, form, limits)
        who = audit_actor(request, user)
        made = await run_in_threadpool(_trigger, state, dag_id, conf, run_id, actor(user), who)
    except (ParamsError, RunIdError) as exc:
        given = {name: form.get(conf_form.PREFIX + name) for name in spec.params}
        fields = conf_form.fields(spec.params, {k: v for k, v in given.items() if v is not None})
        return page(
            request,
            user,
            "trigger.html",
            status_code=422,
            dag_id=dag_id,
            fields=fields,
            error=str(exc),
            extra=str(form.get(conf_form.EXTRA_FIELD, "") or ""),
            run_id=run_id or "",
        )
    return RedirectResponse(_run_url(dag_id, made), status_code=303)


def _trigger(
    state: WebState,
    dag_id: str,
    conf: dict[str, Any],
    run_id: str | None,
    by: str,
    who: Actor,
) -> str:
    with state.store.begin() as conn:
        now = state.store.now()
        made = run_creation.trigger(
            conn,
            dag_id,
            conf=conf,
            triggered_by=by,
            now=now,
            run_id=run_id,
            limits=ConfLimits.of(state.settings),
        )
        audit.record_trigger(conn, who, dag_id, made, conf, now)
    state.waker.wake()
    return made


# -- pause -----------------------------------------------------------------------------------


@router.post("/dags/{dag_id}/pause")
async def pause(
    request: Request, dag_id: str, user: Annotated[User, Depends(require(Action.PAUSE))]
) -> Response:
    """Pause (`paused=1`) or unpause (`paused=0`) the DAG."""
    state = web_state(request)
    form = await request.form()
    paused = _flag(form, "paused")
    await run_in_threadpool(_set_paused, state, dag_id, paused, audit_actor(request, user))
    return RedirectResponse(_back(form, f"/dags/{u(dag_id)}"), status_code=303)


def _set_paused(state: WebState, dag_id: str, paused: bool, who: Actor) -> None:
    with state.store.begin() as conn:
        now = state.store.now()
        dag_store.set_paused(conn, dag_id, paused, now)
        audit.record_pause(conn, who, dag_id, paused, now)
    state.waker.wake()


# -- clear and mark --------------------------------------------------------------------------

Change = Callable[[Connection, datetime, bool], list[TIKey]]


@router.post("/dags/{dag_id}/runs/{run_id}/clear")
async def clear(
    request: Request,
    dag_id: str,
    run_id: str,
    user: Annotated[User, Depends(require(Action.CLEAR))],
) -> Response:
    """Clear one task (`task_id`, with `downstream`, `upstream`, `only_failed`) or, without a
    task, the whole run (`only_failed`)."""
    form = await request.form()
    task_id = str(form.get("task_id", "") or "")[:MAX_TASK_ID]
    only_failed = _flag(form, "only_failed")
    downstream, upstream = _flag(form, "downstream"), _flag(form, "upstream")

    def change(conn: Connection, now: datetime, dry: bool) -> list[TIKey]:
        if not task_id:
            return store_actions.clear_run(
                conn, dag_id, run_id, only_failed=only_failed, dry_run=dry, now=now, by=actor(user)
            )
        return store_actions.clear_task_instances(
            conn,
            dag_id,
            run_id,
            [task_id],
            downstream=downstream,
            upstream=upstream,
            only_failed=only_failed,
            dry_run=dry,
            now=now,
            by=actor(user),
        )

    what = f"task {task_id!r}" if task_id else "every task of the run"
    event = audit.Event(
        audit_actor(request, user),
        AuditAction.TASK_CLEAR if task_id else AuditAction.RUN_CLEAR,
        *audit.run_object(dag_id, run_id, task_id or None),
        {"downstream": downstream, "upstream": upstream, "only_failed": only_failed},
    )
    return await _confirmed(request, user, form, dag_id, run_id, change, event, f"Clear {what}")


@router.post("/dags/{dag_id}/runs/{run_id}/mark")
async def mark(
    request: Request,
    dag_id: str,
    run_id: str,
    user: Annotated[User, Depends(require(Action.MARK))],
) -> Response:
    """Mark one task (`task_id`, with `downstream`, `upstream`) or, without a task, every task
    of the run as `state` (success or failed)."""
    form = await request.form()
    task_id = str(form.get("task_id", "") or "")[:MAX_TASK_ID]
    wanted = str(form.get("state", ""))
    if wanted not in {TIState.SUCCESS.value, TIState.FAILED.value}:
        raise ParamsError(f"state: mark as 'success' or 'failed', not {wanted[:40]!r}")
    downstream, upstream = _flag(form, "downstream"), _flag(form, "upstream")

    def change(conn: Connection, now: datetime, dry: bool) -> list[TIKey]:
        task_ids = [task_id] if task_id else _all_tasks(conn, dag_id, run_id)
        return store_actions.mark_task_instances(
            conn,
            dag_id,
            run_id,
            task_ids,
            state=TIState(wanted),
            downstream=downstream,
            upstream=upstream,
            dry_run=dry,
            now=now,
            by=actor(user),
        )

    what = f"task {task_id!r}" if task_id else "every task of the run"
    event = audit.Event(
        audit_actor(request, user),
        AuditAction.TASK_MARK,
        *audit.run_object(dag_id, run_id, task_id or None),
        {"state": wanted, "downstream": downstream, "upstream": upstream},
    )
    return await _confirmed(
        request, user, form, dag_id, run_id, change, event, f"Mark {what} {wanted}"
    )


@router.post("/dags/{dag_id}/runs/{run_id}/cancel")
async def cancel(
    request: Request,
    dag_id: str,
    run_id: str,
    user: Annotated[User, Depends(require(Action.CANCEL))],
) -> Response:
    """Stop the queued or running try of one task (`task_id`, `map_index`); it fails."""
    form = await request.form()
    task_id = str(form.get("task_id", "") or "")[:MAX_TASK_ID]
    map_index = _map_index(form)

    def change(conn: Connection, now: datetime, dry: bool) -> list[TIKey]:
        return store_actions.cancel_task_instance(
            conn, dag_id, run_id, task_id, map_index=map_index, dry_run=dry, now=now, by=actor(user)
        )

    element = f"[{map_index}]" if map_index >= 0 else ""
    title = f"Cancel the running try of task {task_id + element!r}; it fails"
    event = audit.Event(
        audit_actor(request, user),
        AuditAction.TASK_CANCEL,
        *audit.run_object(dag_id, run_id, task_id),
        {"map_index": map_index},
    )
    return await _confirmed(request, user, form, dag_id, run_id, change, event, title)


def _map_index(form: FormData) -> int:
    text = str(form.get("map_index", "") or "-1")
    try:
        value = int(text)
    except ValueError:
        raise ParamsError(f"map_index: a whole number, not {text[:40]!r}") from None
    if not -1 <= value <= 1_000_000:
        raise ParamsError(f"map_index: between -1 and 1000000, not {value}")
    return value


def _all_tasks(conn: Connection, dag_id: str, run_id: str) -> list[str]:
    from drayman.store import runs as run_store

    run = run_store.get_run(conn, dag_id, run_id)
    return list(dag_store.load_spec(conn, dag_id, run.bundle_version).tasks)


async def _confirmed(
    request: Request,
    user: User,
    form: FormData,
    dag_id: str,
    run_id: str,
    change: Change,
    event: audit.Event,
    title: str,
) -> Response:
    """Without `confirmed`, show what `change` would do; with it, do it (with its audit
    event, in one transaction) and go back."""
    state = web_state(request)
    confirmed = _flag(form, "confirmed")
    keys = await run_in_threadpool(_apply, state, change, event, not confirmed)
    if confirmed:
        return RedirectResponse(_back(form, _run_url(dag_id, run_id)), status_code=303)
    fields = [(k, str(v)) for k, v in form.multi_items() if k not in {"csrf_token", "confirmed"}]
    return page(
        request,
        user,
        "confirm.html",
        title=title,
        dag_id=dag_id,
        run_id=run_id,
        keys=keys,
        fields=fields,
        action=request.url.path,
    )


def _apply(state: WebState, change: Change, event: audit.Event, dry: bool) -> list[TIKey]:
    if dry:
        with state.store.read() as conn:
            return change(conn, state.store.now(), True)
    with state.store.begin() as conn:
        now = state.store.now()
        keys = change(conn, now, False)
        audit.record_event(conn, event, now, task_instances=len(keys))
    state.waker.wake()
    return keys
