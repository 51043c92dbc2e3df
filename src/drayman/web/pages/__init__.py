"""The HTML pages: server-rendered with Jinja2, small scripts for live updates, no build step.

`router` is what `web.app.create_app` includes. One module per page (`dags`, `runs`, `tries`,
`workers`) plus `actions` (the POST forms); the charts are computed in Python (`grid`,
`graph`, `gantt`, `durations`) and drawn as inline SVG by the templates, so the browser runs
no chart library and the CSP can forbid inline scripts.
"""

from __future__ import annotations

from fastapi import APIRouter

from drayman.web.pages import actions, dags, runs, tries, workers

router = APIRouter()
for _module in (dags, runs, tries, workers, actions):
    router.include_router(_module.router)

__all__ = ["router"]
