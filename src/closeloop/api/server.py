"""The server process of ``closeloop serve``: the REST API and the web application over one App."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from closeloop.api.app import create_api
from closeloop.auth.authorizer import DbAuthorizer


def create_server(url: str | None = None, *, app: Any = None, web: bool = True, source: str = "closeloop",
                  upload_dir: str | None = None, secure_cookies: bool | None = None) -> FastAPI:
    """One FastAPI application: ``/api/v1`` (API keys) and the web pages (browser sessions).

    ``app`` is an existing closeloop App (tests); its authorizer is replaced by the database one,
    since every request acts as an authenticated user.
    """
    from closeloop.app import App

    cl = app or App(url, source=source, actor="api")
    cl.authorizer = DbAuthorizer()
    server = FastAPI(title="closeloop", version="1", docs_url="/api/v1/docs", redoc_url=None,
                     openapi_url="/api/v1/openapi.json")
    server.state.closeloop = cl
    create_api(cl, app=server, upload_dir=upload_dir)
    if web:
        from closeloop.web.app import install_web

        install_web(server, cl, secure_cookies=secure_cookies)
    return server


def from_environment() -> FastAPI:
    """uvicorn factory for ``closeloop serve``: the database from CLOSELOOP_DATABASE_URL."""
    import os

    secure = os.environ.get("CLOSELOOP_SECURE_COOKIES") == "1"
    return create_server(os.environ.get("CLOSELOOP_DATABASE_URL"), secure_cookies=True if secure else None)
