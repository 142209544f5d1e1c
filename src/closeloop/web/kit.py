"""What every page module uses: the signed-in user, queries and commands as that user, CSRF, templates.

A page module (see ``web/pages/__init__.py``) declares ``nav`` and ``router``::

    from fastapi import APIRouter, Request
    from closeloop.web.kit import NavEntry, page, render, run_query

    nav = NavEntry("Invoices", "/invoices", order=40)
    router = APIRouter()

    @router.get("/invoices")
    @page
    def invoices(request: Request):
        data = run_query(request, "invoices", {"status": request.query_params.get("status")})
        return render(request, "invoices.html", data=data)

``@page`` signs the user in (or redirects to the login page) and turns
refusals into an error page; :func:`run_query` / :func:`run_command` act as
the signed-in user, so the authorizer applies roles and entity scope;
:func:`check_csrf` guards every form POST.
"""

from __future__ import annotations

import functools
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency, format_decimal
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from closeloop.auth.authorizer import current_principal
from closeloop.auth.users import Principal, record_event, session_user
from closeloop.core.errors import CloseloopError, ForbiddenError

SESSION_COOKIE = "closeloop_session"
LOGIN_CSRF_COOKIE = "closeloop_login_csrf"
DEFAULT_LOCALE = "en_US"
PAGE_SIZE = 25


@dataclass(frozen=True)
class NavEntry:
    """One item of the navigation bar. ``roles``: shown only to holders of one of them (empty: everyone)."""

    label: str
    path: str
    order: int = 100
    roles: tuple[str, ...] = ()


class NotSignedIn(Exception):
    pass


# --------------------------------------------------------------------------- templates and formatting

_TEMPLATES = str(resources.files("closeloop") / "web" / "templates")
env = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=select_autoescape(["html"]), trim_blocks=True,
                  lstrip_blocks=True)


def locale_of(request: Request) -> str:
    user: Principal | None = getattr(request.state, "user", None)
    candidates = [user.locale] if user is not None and user.locale else []
    for part in (request.headers.get("accept-language") or "").split(","):
        tag = part.split(";")[0].strip().replace("-", "_")
        if tag and tag != "*":
            candidates.append(tag)
    for tag in candidates:
        try:
            return str(Locale.parse(tag))
        except (UnknownLocaleError, ValueError, TypeError):
            continue
    return DEFAULT_LOCALE


def money(value: Any, currency: str | None = None, locale: str = DEFAULT_LOCALE) -> str:
    """A decimal-string amount for the reader's locale (Babel); blanks stay blank."""
    if value is None or value == "":
        return ""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    if currency:
        return str(format_currency(number, currency, locale=locale))
    return str(format_decimal(number, locale=locale))


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


env.filters["json"] = pretty_json
env.globals["urlencode"] = lambda d: urlencode({k: v for k, v in d.items() if v not in (None, "")})
env.globals["quote"] = lambda s: quote(str(s), safe="")


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    loc = locale_of(request)
    user = getattr(request.state, "user", None)
    ctx = {
        "request": request, "user": user, "csrf_token": getattr(request.state, "csrf", ""),
        "nav": visible_nav(request.app, user), "path": request.url.path, "locale": loc,
        "money": lambda v, c=None: money(v, c, loc), "flash": request.query_params.get("flash"),
        "flash_error": request.query_params.get("error"), **context,
    }
    return HTMLResponse(env.get_template(template).render(**ctx), status_code=status)


def visible_nav(app: Any, user: Principal | None) -> list[NavEntry]:
    entries: list[NavEntry] = getattr(app.state, "nav", [])
    if user is None:
        return []
    return [e for e in entries if not e.roles or user.roles & set(e.roles)]


# --------------------------------------------------------------------------- users, sessions, CSRF


def closeloop(request: Request) -> Any:
    return request.app.state.closeloop


def sign_in(request: Request) -> Principal:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise NotSignedIn()
    with closeloop(request).unit_of_work(write=False) as uow:
        found = session_user(uow, token)
    if found is None:
        raise NotSignedIn()
    request.state.user, request.state.csrf = found
    return found[0]


def page(fn: Callable[..., Response]) -> Callable[..., Response]:
    """Sign the user in (else redirect to /login) and show refusals as an error page with their status."""

    @functools.wraps(fn)
    def wrapper(request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            user = sign_in(request)
        except NotSignedIn:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        token = current_principal.set(user)
        try:
            return fn(request, *args, **kwargs)
        except CloseloopError as err:
            return error_page(request, err)
        finally:
            current_principal.reset(token)

    return wrapper


def error_page(request: Request, err: CloseloopError) -> HTMLResponse:
    from closeloop.api.errors import status_of

    return render(request, "error.html", status=status_of(err), error=err.to_dict())


async def form_data(request: Request) -> dict[str, str]:
    """The posted form (size-limited), as plain strings."""
    from closeloop.api.guard import read_body

    raw = await read_body(request, 256 * 1024)
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        from closeloop.api.errors import ApiError
        from closeloop.core.errors import ErrorCode

        raise ApiError(415, ErrorCode.VALIDATION_ERROR, "forms are posted as application/x-www-form-urlencoded",
                       field="Content-Type")
    from urllib.parse import parse_qsl

    return dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))


def check_csrf(request: Request, form: dict[str, str]) -> None:
    """Every form POST carries the session's CSRF token; a missing or wrong one is refused and recorded."""
    expected = getattr(request.state, "csrf", "")
    given = form.get("csrf_token", "")
    if not expected or not given or not hmac.compare_digest(expected, given):
        user = getattr(request.state, "user", None)
        with closeloop(request).unit_of_work() as uow:
            record_event(uow, "csrf", "forbidden", actor=user.name if user else None,
                         detail=f"POST {request.url.path} without a valid CSRF token",
                         client=request.client.host if request.client else None)
        raise ForbiddenError("the form has no valid CSRF token; reload the page and try again", field="csrf_token",
                             reason="csrf")


def run_query(request: Request, name: str, where: dict[str, Any] | None = None) -> dict[str, Any]:
    user: Principal = request.state.user
    clean = {k: v for k, v in (where or {}).items() if v not in (None, "")}
    return closeloop(request).query(name, clean, actor=user.name)  # type: ignore[no-any-return]


def run_command(request: Request, name: str, payload: dict[str, Any]) -> dict[str, Any]:
    user: Principal = request.state.user
    return closeloop(request).do(name, payload, actor=user.name)  # type: ignore[no-any-return]


def has_operation(name: str, kind: str = "query") -> bool:
    from closeloop.core import registry

    op = registry.operations().get(name)
    return op is not None and op.kind == kind


def today(request: Request) -> date:
    return closeloop(request).clock.today()  # type: ignore[no-any-return]


def paginate(items: list[Any], request: Request, size: int = PAGE_SIZE) -> tuple[list[Any], dict[str, Any]]:
    """Page ``items`` by the ``page`` query parameter; returns the page and links for the pager."""
    try:
        number = max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        number = 1
    pages = max(1, -(-len(items) // size))
    number = min(number, pages)
    params = {k: v for k, v in request.query_params.items() if k not in ("page", "flash", "error")}

    def link(n: int) -> str:
        return request.url.path + "?" + urlencode({**params, "page": n})

    return items[(number - 1) * size: number * size], {
        "page": number, "pages": pages, "total": len(items),
        "prev": link(number - 1) if number > 1 else None, "next": link(number + 1) if number < pages else None}


def form_action(fn: Callable[..., Response]) -> Callable[..., Any]:
    """A form POST handler ``fn(request, form, **path_params)``: signed in, CSRF-checked, run in a thread,
    refusals shown as the error page (nothing is written when the token is missing or wrong)."""
    import inspect

    from starlette.concurrency import run_in_threadpool

    @functools.wraps(fn)
    async def wrapper(request: Request, **kwargs: Any) -> Response:
        try:
            form = await form_data(request)
        except CloseloopError as err:
            return error_page(request, err)

        def inner() -> Response:
            try:
                user = sign_in(request)
            except NotSignedIn:
                return RedirectResponse("/login", status_code=303)
            token = current_principal.set(user)
            try:
                check_csrf(request, form)
                return fn(request, form, **kwargs)
            except CloseloopError as err:
                return error_page(request, err)
            finally:
                current_principal.reset(token)

        return await run_in_threadpool(inner)

    signature = inspect.signature(fn)
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for name, p in signature.parameters.items() if name != "form"])
    return wrapper
