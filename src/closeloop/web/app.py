"""The web application: server-rendered pages for people, on the same server as the REST API.

Pages are modules listed in ``web/pages/__init__.py`` (PAGE_MODULES); each
brings its ``router`` and its ``nav`` entry. Sign-in uses a session cookie
(HttpOnly, SameSite=Lax, Secure over HTTPS) whose token is stored hashed;
every form POST carries a CSRF token bound to the session (the login form a
double-submit cookie). Assets are served from the package (no CDN).
"""

from __future__ import annotations

import contextlib
import hmac
import importlib
import secrets
from importlib import resources
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from closeloop.auth.users import SESSION_HOURS, create_session, end_session, record_event, verify_password
from closeloop.core.errors import CloseloopError
from closeloop.web import kit
from closeloop.web.pages import PAGE_MODULES

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
                               " form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _safe_next(target: str | None) -> str:
    """Only a local path may follow the login (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def install_web(server: FastAPI, cl: Any, *, secure_cookies: bool | None = None) -> None:
    server.state.closeloop = cl
    server.state.nav = []
    static = str(resources.files("closeloop") / "web" / "static")
    server.mount("/static", StaticFiles(directory=static), name="static")

    def secure(request: Request) -> bool:
        return secure_cookies if secure_cookies is not None else request.url.scheme == "https"

    @server.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        if not request.url.path.startswith("/api/"):
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def html_error(request: Request, status: int, message: str) -> HTMLResponse:
        with contextlib.suppress(kit.NotSignedIn):
            kit.sign_in(request)
        return kit.render(request, "error.html", status=status, error={"code": "not_found" if status == 404
                                                                        else "forbidden", "message": message,
                                                                        "details": {}})

    server.state.html_error = html_error

    @server.get("/login", include_in_schema=False)
    def login_form(request: Request) -> Response:
        token = secrets.token_urlsafe(24)
        response = kit.render(request, "login.html", login_csrf=token, next=_safe_next(request.query_params.get("next")),
                              error=request.query_params.get("error"))
        response.set_cookie(kit.LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure(request),
                            max_age=3600)
        return response

    @server.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        try:
            form = await kit.form_data(request)
        except CloseloopError as err:
            return kit.error_page(request, err)
        target = _safe_next(form.get("next"))
        cookie = request.cookies.get(kit.LOGIN_CSRF_COOKIE, "")
        given = form.get("csrf_token", "")
        if not cookie or not given or not hmac.compare_digest(cookie, given):
            await run_in_threadpool(_record, cl, "csrf", form.get("username"), "login form without a valid CSRF token",
                                    request)
            return kit.render(request, "login.html", status=403, login_csrf=cookie or secrets.token_urlsafe(24),
                              next=target, error="The form expired; please sign in again.")
        user, password = form.get("username", "")[:64], form.get("password", "")[:1024]

        def check() -> tuple[str, str] | None:
            with cl.unit_of_work() as uow:
                principal = verify_password(uow, user, password, client=request.client.host if request.client
                                            else None)
                return create_session(uow, principal) if principal else None

        session = await run_in_threadpool(check)
        if session is None:
            return kit.render(request, "login.html", status=401, login_csrf=cookie, next=target,
                              error="Unknown user name or wrong password.")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(kit.SESSION_COOKIE, session[0], httponly=True, samesite="lax", secure=secure(request),
                            max_age=SESSION_HOURS * 3600, path="/")
        response.delete_cookie(kit.LOGIN_CSRF_COOKIE)
        return response

    @server.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        token = request.cookies.get(kit.SESSION_COOKIE)
        try:
            form = await kit.form_data(request)
            await run_in_threadpool(kit.sign_in, request)
            await run_in_threadpool(kit.check_csrf, request, form)
        except kit.NotSignedIn:
            return RedirectResponse("/login", status_code=303)
        except CloseloopError as err:
            return kit.error_page(request, err)

        def end() -> None:
            with cl.unit_of_work() as uow:
                end_session(uow, token or "")

        await run_in_threadpool(end)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(kit.SESSION_COOKIE, path="/")
        return response

    for name in PAGE_MODULES:
        module = importlib.import_module(name)
        server.include_router(module.router, include_in_schema=False)
        entries = module.nav if isinstance(module.nav, (list, tuple)) else [module.nav]
        server.state.nav.extend(entries)
    server.state.nav.sort(key=lambda e: (e.order, e.label))


def _record(cl: Any, kind: str, actor: str | None, detail: str, request: Request) -> None:
    with cl.unit_of_work() as uow:
        record_event(uow, kind, "forbidden", actor=actor, detail=detail,
                     client=request.client.host if request.client else None)


def login_redirect(path: str) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(path, safe='')}", status_code=303)
