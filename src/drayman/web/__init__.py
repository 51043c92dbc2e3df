"""The web: one ASGI app serving the JSON API under /api/v1 and the server-rendered pages.

`app.create_app(settings, store)` builds it; `security` says who is asking and what they may
do; `reads` holds the read models that pages and API share; `api/` is the JSON API (one
module per resource) and `pages/` the HTML pages. See docs/adr/0010-web-architecture.md.
"""
