"""The JSON API under /api/v1: one module per resource, each with its own router.

`router` gathers them (mounted at /api/v1 by `create_app`); `health_router` serves /health
at the root too, without auth, for load balancers and systemd checks.
"""

from __future__ import annotations

from fastapi import APIRouter

from drayman.web.api import audit, dags, health, logs, runs, tasks, workers

router = APIRouter()
for module in (health, dags, runs, tasks, logs, workers, audit):
    router.include_router(module.router)

health_router = health.root_router

__all__ = ["health_router", "router"]
