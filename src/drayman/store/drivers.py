"""Database drivers: which one a URL needs, and what to install when it is missing.

drayman ships its drivers as extras (`drayman[postgresql]` brings psycopg 3,
`drayman[mysql]` PyMySQL), so a fresh `pip install drayman` has only SQLite's. SQLAlchemy
imports a URL's driver when the engine is made; without it, a new user would see a
traceback ending in `No module named 'psycopg'`. This turns that into one line saying what
to install, without repeating the URL (it may hold a password).
"""

from __future__ import annotations

from sqlalchemy.engine import make_url

from drayman.exceptions import ConfigError

EXTRAS = {"psycopg": "postgresql", "pymysql": "mysql"}  # driver module -> drayman's extra
SUPPORTED = {"postgresql": "postgresql+psycopg://", "mysql": "mysql+pymysql://"}


def missing_driver(url: str, exc: ModuleNotFoundError) -> ConfigError:
    """The error for a URL whose driver module could not be imported."""
    module = (exc.name or "").split(".")[0] or "its driver"
    parsed = make_url(url)
    needs = f"database_url {parsed.drivername}://... needs the {module} driver, not installed"
    if module in EXTRAS:
        return ConfigError(f"{needs}: pip install 'drayman[{EXTRAS[module]}]'")
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED:
        return ConfigError(needs)
    return ConfigError(
        f"{needs}; drayman supports {SUPPORTED[backend]}...: pip install 'drayman[{backend}]' "
        f"and use {SUPPORTED[backend]}..."
    )
