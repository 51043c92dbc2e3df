"""Acceptance fixtures: the real `drayman` CLI as subprocesses, each test tree in a temp dir.

The installations they build are `support.cli.Drayman` (see there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest

from support.cli import Drayman, empty_postgres


@pytest.fixture(scope="session")
def make_drayman(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Drayman]:
    """Build a fresh installation: make_drayman("name", database_url=..., parse_timeout_s=2)."""

    def make(name: str, *, database_url: str | None = None, **settings: str) -> Drayman:
        return Drayman(tmp_path_factory.mktemp(name), database_url=database_url, **settings)

    return make


@pytest.fixture
def drayman(make_drayman: Callable[..., Drayman]) -> Drayman:
    """A fresh SQLite installation for one test (no database created yet)."""
    return make_drayman("drayman")


@pytest.fixture(scope="session")
def database_url_for(
    request: pytest.FixtureRequest,
) -> Callable[[str], AbstractContextManager[str | None]]:
    """`with database_url_for(backend) as url:` None for "sqlite" (a file under DRAYMAN_HOME);
    for "postgresql" the session's throwaway database (skipped or failed if there is none),
    empty on entry and emptied again on exit for the tests that share it after us."""

    @contextmanager
    def url(backend: str) -> Iterator[str | None]:
        if backend == "sqlite":
            yield None
        elif backend == "postgresql":
            database = empty_postgres(request.getfixturevalue("postgres_url"))
            try:
                yield database
            finally:
                empty_postgres(database)
        else:
            raise ValueError(f"unknown backend {backend!r}")

    return url
