"""Web tests share the API fixtures (server, users, live server), and add ``o2c``: one small order-to-cash
company per test module (closeloop.web.sample, built through the vocabulary) behind a server, for the
pages of customers, contracts, invoices, collections, revenue, close and rollout."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from closeloop.app import App
from closeloop.core.clock import ScenarioClock
from closeloop.scenarios.fresh import fresh_database
from tests.api.conftest import PASSWORD, USERS, LiveServer, Server, client, live, make_server, server  # noqa: F401
from tests.conftest import TEST_DATABASE, app, clock, db_url, de01, post, us01  # noqa: F401

O2C_USERS: dict[str, tuple[list[str], list[str]]] = {
    **USERS,
    "collector": (["collections"], []),
    "biller": (["billing"], []),
    "impl": (["implementation"], []),
}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def o2c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The sample company (clock on 10 March 2026) served with users of every role; shared by a module."""
    from closeloop.api.server import create_server
    from closeloop.auth.users import add_user, create_key
    from closeloop.web.sample import build_sample

    with fresh_database(TEST_DATABASE) as url:
        clock = ScenarioClock(date(2026, 1, 1))
        instance = App(url, clock=clock, actor="tester", migrate=False)
        try:
            build_sample(instance, clock)
            keys = {}
            with instance.unit_of_work() as uow:
                for name, (roles, entities) in O2C_USERS.items():
                    add_user(uow, name, roles, entities=entities, password=PASSWORD)
                    keys[name] = create_key(uow, name)
            asgi = create_server(app=instance, upload_dir=str(tmp_path_factory.mktemp("uploads")))
            yield Server(app=instance, asgi=asgi, keys=keys)
        finally:
            instance.close()


def login(c: Any, user: str, password: str = PASSWORD, next_: str = "/") -> Any:
    token = CSRF.search(c.get("/login").text).group(1)
    return c.post("/login", data={"username": user, "password": password, "csrf_token": token, "next": next_},
                       follow_redirects=False)


class UserClient:
    """One signed-in user's requests through the module's shared test client, with the user's own cookies.

    All users share one client (one event loop, one worker thread pool for the whole module): the App keeps a
    database connection per thread, so a client per user (or per request) would hold ever more connections
    and exhaust PostgreSQL's pool over a module's hundreds of requests."""

    def __init__(self, shared: Any, user: str) -> None:
        import httpx

        self.shared, self.user = shared, user
        self.cookies = httpx.Cookies()
        response = self._call("get", "/login")
        token = CSRF.search(response.text).group(1)
        signed = self._call("post", "/login", data={"username": user, "password": PASSWORD, "csrf_token": token,
                                                     "next": "/"}, follow_redirects=False)
        assert signed.status_code == 303, (user, signed.text[:300])

    def _call(self, method: str, url: str, **kw: Any) -> Any:
        import httpx

        self.shared.cookies = self.cookies
        try:
            return getattr(self.shared, method)(url, **kw)
        finally:
            self.cookies = httpx.Cookies(self.shared.cookies)

    def get(self, url: str, **kw: Any) -> Any:
        return self._call("get", url, **kw)

    def post(self, url: str, **kw: Any) -> Any:
        return self._call("post", url, **kw)


@pytest.fixture(scope="module")
def as_user(o2c: Server) -> Iterator[Any]:
    """``as_user("ctrl")``: a client signed in as that user, over the module's one shared test client."""
    with o2c.client() as shared:
        yield lambda user: UserClient(shared, user)


def csrf_of(c: Any, path: str = "/") -> str:
    return CSRF.search(c.get(path).text).group(1)
