"""The Jinja2 environment of the pages: autoescaped, with the CSRF token at hand.

Autoescaping is on for every template (Starlette's default), so a DAG id, a log line or a
conf value containing HTML is shown as text. Templates call `csrf_token(request)` to put the
session's token in their forms.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates

from drayman.web.security import csrf_token_for

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"

# stateless apart from its loader cache: one per process is enough, whatever the app count
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.autoescape = True  # every template, whatever its file name
templates.env.globals["csrf_token"] = csrf_token_for
