"""Web tests share the API fixtures (server, users, live server)."""

from tests.api.conftest import LiveServer, Server, client, live, make_server, server  # noqa: F401
from tests.conftest import app, clock, db_url, de01, post, us01  # noqa: F401
