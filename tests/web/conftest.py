"""Fixtures of the web tests: the shared world (see webworld.py) and clients by role."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from webworld import ROLES, WebWorld, build_world


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebWorld]:
    built = build_world(tmp_path_factory.mktemp("web"))
    yield built
    built.store.dispose()


@pytest.fixture(scope="session")
def as_role(world: WebWorld) -> Callable[[str], TestClient]:
    """Clients by bearer token, one per role, made once."""
    clients = {role: world.client(role) for role in ROLES}
    return clients.__getitem__


@pytest.fixture
def anonymous(world: WebWorld) -> TestClient:
    return world.client()
