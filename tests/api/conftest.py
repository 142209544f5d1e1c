"""Fixtures for the REST API and web tests: a server over the test App, users with roles and keys,
and a live uvicorn server on 127.0.0.1 for contract and browser tests."""

from __future__ import annotations

import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from closeloop.app import App
from tests.conftest import app, clock, db_url, de01, post, us01  # noqa: F401 - fixtures shared with the suite

with warnings.catch_warnings():  # starlette's TestClient warns that it prefers httpx2; httpx is what we ship
    warnings.simplefilter("ignore")
    import fastapi.testclient  # noqa: F401

PASSWORD = "correct-horse-9"

# name -> (roles, entities)
USERS: dict[str, tuple[list[str], list[str]]] = {
    "tester": (["admin"], []),
    "ctrl": (["controller"], []),
    "ctrl2": (["controller"], []),
    "reader": (["read_only"], []),
    "de_ctrl": (["controller"], ["DE01"]),
    "sales": (["sales_ops"], []),
}


@dataclass
class Server:
    app: App
    asgi: Any
    keys: dict[str, str] = field(default_factory=dict)

    def client(self) -> Any:
        from fastapi.testclient import TestClient

        return TestClient(self.asgi)

    def headers(self, user: str, **extra: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[user], **extra}


def make_server(instance: App, users: dict[str, tuple[list[str], list[str]]] = USERS) -> Server:
    from closeloop.api.server import create_server
    from closeloop.auth.users import add_user, create_key

    keys = {}
    with instance.unit_of_work() as uow:
        for name, (roles, entities) in users.items():
            add_user(uow, name, roles, entities=entities, password=PASSWORD)
            keys[name] = create_key(uow, name)
    return Server(app=instance, asgi=create_server(app=instance), keys=keys)


@pytest.fixture
def server(app: App, us01: str, de01: str) -> Server:  # noqa: F811
    return make_server(app)


@pytest.fixture
def client(server: Server) -> Any:
    return server.client()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn serving an ASGI app on 127.0.0.1 in a thread, stopped at the end."""

    def __init__(self, asgi: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live(server: Server) -> Iterator[LiveServer]:
    with LiveServer(server.asgi) as running:
        yield running
