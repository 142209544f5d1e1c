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
from babel.numbers import format_currency, format_decimal, format_percent
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
    also: tuple[str, ...] = ()  # further path prefixes that belong to this entry (highlighted as active)

    def is_active(self, path: str) -> bool:
        if self.path == "/":
            return path == "/" or any(path.startswith(p) for p in self.also)
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in (self.path, *self.also))


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
    places = max(0, -int(number.as_tuple().exponent)) if number.is_finite() else 0
    return str(format_decimal(number, format="#,##0" + ("." + "0" * places if places else ""), locale=locale))


def measure(value: Any, unit: str = "", locale: str = DEFAULT_LOCALE) -> str:
    """A KPI value for the reader's locale: a ratio as a percentage, days with their unit, else a number."""
    if value is None or value == "" or value == "—":
        return "—"
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    if unit == "ratio":
        return str(format_percent(number, format="#,##0.0%", locale=locale))
    text = str(format_decimal(number, format="#,##0.##", locale=locale))
    return f"{text} days" if unit == "days" else text


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


def address(value: Any, postal_code: str | None = None) -> str:
    """A postal address (a mapping of street, street2, postal_code, city, or a text) on one line."""
    if not value and not postal_code:
        return ""
    if not isinstance(value, dict):
        return " ".join(str(v) for v in (value, postal_code) if v)
    city = " ".join(str(v) for v in (value.get("postal_code") or postal_code, value.get("city")) if v)
    parts = [value.get("street"), value.get("street2"), city, value.get("region")]
    return ", ".join(str(p) for p in parts if p)


env.filters["json"] = pretty_json
env.filters["address"] = address
env.globals["urlencode"] = lambda d: urlencode({k: v for k, v in d.items() if v not in (None, "")})
env.globals["quote"] = lambda s: quote(str(s), safe="")


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    loc = locale_of(request)
    user = getattr(request.state, "user", None)
    ctx = {
        "request": request, "user": user, "csrf_token": getattr(request.state, "csrf", ""),
        "nav": visible_nav(request.app, user), "path": request.url.path, "locale": loc,
        "money": lambda v, c=None: money(v, c, loc), "measure": lambda v, u="": measure(v, u, loc),
        "flash": request.query_params.get("flash"),
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


@dataclass(frozen=True)
class Upload:
    """A file posted with a multipart form: its name as the browser gave it, and its bytes."""

    filename: str
    data: bytes


MAX_UPLOAD = 20 * 1024 * 1024


async def form_data(request: Request) -> dict[str, Any]:
    """The posted form (size-limited), as plain strings; a multipart form's files as :class:`Upload`."""
    from closeloop.api.guard import read_body

    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        request._body = await read_body(request, MAX_UPLOAD)  # refused when oversized; form() parses it from here
        out: dict[str, Any] = {}
        async with request.form(max_files=4, max_fields=50) as form:
            for key, value in form.multi_items():
                if isinstance(value, str):
                    out[key] = value
                else:
                    out[key] = Upload(value.filename or "", await value.read())
        return out
    raw = await read_body(request, 256 * 1024)
    if content_type != "application/x-www-form-urlencoded":
        from closeloop.api.errors import ApiError
        from closeloop.core.errors import ErrorCode

        raise ApiError(415, ErrorCode.VALIDATION_ERROR, "forms are posted as application/x-www-form-urlencoded",
                       field="Content-Type")
    from urllib.parse import parse_qsl

    return dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))


def check_csrf(request: Request, form: dict[str, Any]) -> None:
    """Every form POST carries the session's CSRF token; a missing or wrong one is refused and recorded."""
    expected = getattr(request.state, "csrf", "")
    given = form.get("csrf_token", "")
    if not isinstance(given, str) or not expected or not given or not hmac.compare_digest(expected, given):
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


# --------------------------------------------------------------------------- what pages share


def can(request: Request, name: str) -> bool:
    """Whether the signed-in user holds one of the roles of operation ``name`` (to show its button or form)."""
    from closeloop.core import registry

    user: Principal | None = getattr(request.state, "user", None)
    op = registry.operations().get(name)
    return user is not None and op is not None and bool(user.roles & set(op.roles))


def require(request: Request, name: str, payload: dict[str, Any]) -> None:
    """Refuse at once when the user holds no role for command ``name`` (before any work such as storing an
    upload): the refusal goes through the command itself with ``payload``, so it is audited like any other."""
    if not can(request, name):
        run_command(request, name, payload)


def entity_choice(request: Request) -> tuple[list[dict[str, Any]], str | None]:
    """The entities the user may see, and the one chosen by ``?entity=`` (the queries that receive it refuse,
    and audit, an entity outside the user's scope)."""
    entities = run_query(request, "entities")["entities"]
    return entities, request.query_params.get("entity") or None


def per_entity(request: Request, name: str, where: dict[str, Any], entity: str | None,
               list_key: str = "items") -> list[dict[str, Any]]:
    """The ``list_key`` items of a query that takes an ``entity``: for the chosen entity, else every entity the
    user may see when the user is scoped (the authorizer refuses an unnamed entity to a multi-entity user),
    else all at once. Each item carries its entity."""
    user: Principal = request.state.user
    if entity is not None or not user.scoped:
        result = run_query(request, name, {**where, "entity": entity})
        return [dict(i, entity=i.get("entity") or entity) for i in result.get(list_key) or []]
    items: list[dict[str, Any]] = []
    for code in sorted(user.entities):
        items.extend(dict(i, entity=i.get("entity") or code)
                     for i in run_query(request, name, {**where, "entity": code}).get(list_key) or [])
    return items


def parse_day(value: str | None, field: str) -> str | None:
    """A ``YYYY-MM-DD`` query parameter, or None; anything else is a validation error naming the field."""
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        from closeloop.core.errors import ValidationError

        raise ValidationError(f"{field} must be a date (YYYY-MM-DD), not {value!r}", field=field) from None


def parse_period(value: str | None, field: str = "period") -> str | None:
    """A ``YYYY-MM`` query parameter, or None."""
    if value in (None, ""):
        return None
    text = str(value)
    try:
        date.fromisoformat(text + "-01")
    except ValueError:
        from closeloop.core.errors import ValidationError

        raise ValidationError(f"{field} must be a month (YYYY-MM), not {value!r}", field=field) from None
    return text


def download(content: bytes, filename: str, media_type: str, *, inline: bool = False) -> Response:
    """A file response; the name is reduced to safe characters (it is only ever built from record numbers)."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename) or "download"
    disposition = "inline" if inline else "attachment"
    return Response(content, media_type=media_type, headers={"Content-Disposition": f'{disposition}; filename="{safe}"'})


def redirect(path: str, **params: Any) -> RedirectResponse:
    """303 to ``path`` with ``params`` (flash, error...) in the query string."""
    clean = {k: v for k, v in params.items() if v not in (None, "")}
    return RedirectResponse(path + ("?" + urlencode(clean) if clean else ""), status_code=303)
