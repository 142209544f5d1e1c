"""The authorizer App consults before and after every command and query.

``App.do`` and ``App.query`` call, inside the unit of work::

    payload = app.authorizer.authorize(uow, operation, payload, actor)   # may fill in entity / approver
    result = operation.fn(uow, payload)
    result = app.authorizer.check_result(uow, operation, payload, result, actor)

A refusal is a ``ForbiddenError`` (code ``forbidden``); App rolls the unit of
work back and writes the refusal to the audit log, so every denial is audited.

Two authorizers:

- :class:`ConfigAuthorizer` (the default of every App: CLI, scenarios, tests):
  users come from ``app.services.config["users"]`` (the scenario runner puts a
  scenario's ``users:`` there). Without users every user holds every role, as
  SCENARIOS.md says; the App's own actor (the scenario runner, the CLI
  operator) is always trusted.
- :class:`DbAuthorizer` (``closeloop serve``: REST API and web app): the actor
  is an authenticated user of the ``auth_user`` table.

Both apply the same rules (:func:`check`):

1. **Roles**: the principal holds one of the operation's roles (each
   ``@command``/``@query`` states them).
2. **Entity scope**: a user scoped to entities acts and reads only there. A
   payload's ``entity`` is checked (and filled in when the user has exactly
   one entity); records named by other fields are resolved to their entity by
   the resolvers in :data:`RECORD_ENTITY` (areas add theirs with
   :func:`record_entity`); results naming another entity are refused and list
   items of other entities are filtered out.
3. **Segregation of duties**: an ``approver`` is the acting person (a person
   cannot approve in someone else's name), and the rules in :data:`SOD_RULES`
   (added with :func:`maker_checker`) refuse an approval by the record's maker.
   The manual-journal rule lives in ``ledger.service.journal_approve`` itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from closeloop.auth.users import Principal, get_user
from closeloop.core.errors import CloseloopError, ForbiddenError
from closeloop.core.registry import ROLES, Operation

# The authenticated principal of the current request (set by the API and the web app).
current_principal: ContextVar[Principal | None] = ContextVar("closeloop_principal", default=None)

# field name -> fn(uow, value) -> entity code or None: which entity a record named in a payload belongs to.
RECORD_ENTITY: dict[str, Callable[[Any, Any], str | None]] = {}
# operation name -> the payload field that names the entity when it is not called "entity".
ENTITY_FIELD: dict[str, str] = {"entity.create": "code"}
# approval command -> fn(uow, payload) -> the maker's user name (or None when unknown).
SOD_RULES: dict[str, Callable[[Any, Any], str | None]] = {}
# query -> (list field, key naming the entity) for results whose items are not keyed "entity".
RESULT_SCOPE: dict[str, tuple[str, str]] = {"entities": ("entities", "code")}
APPROVER_FIELDS = ("approver",)


def record_entity(field: str) -> Callable[[Callable[[Any, Any], str | None]], Callable[[Any, Any], str | None]]:
    """Declare how to find the entity of a record named by ``field`` in a payload."""

    def register(fn: Callable[[Any, Any], str | None]) -> Callable[[Any, Any], str | None]:
        RECORD_ENTITY[field] = fn
        return fn

    return register


def maker_checker(command: str) -> Callable[[Callable[[Any, Any], str | None]], Callable[[Any, Any], str | None]]:
    """Declare that ``command`` approves something whose maker (returned by the function) may not approve it."""

    def register(fn: Callable[[Any, Any], str | None]) -> Callable[[Any, Any], str | None]:
        SOD_RULES[command] = fn
        return fn

    return register


@record_entity("exception")
def _exception_entity(uow: Any, value: Any) -> str | None:
    from closeloop.core.exception_queue import get_exception

    return get_exception(uow, int(value)).get("entity")  # type: ignore[no-any-return]


@record_entity("journal")
def _journal_entity(uow: Any, value: Any) -> str | None:
    from closeloop.ledger.service import find_entry

    # A journal awaiting approval is not in the ledger yet (not_found here): its result names the
    # entity, which check_result verifies before the unit of work commits.
    return str(find_entry(uow, str(value))[1])


def deny(message: str, **details: Any) -> ForbiddenError:
    return ForbiddenError(message, **details)


def check(uow: Any, principal: Principal, op: Operation, payload: Any) -> Any:
    """Apply roles, entity scope and segregation of duties; returns the payload (possibly filled in)."""
    allowed = set(op.roles)
    if not principal.roles & allowed:
        raise deny(f"{principal.name} holds {', '.join(sorted(principal.roles)) or 'no role'}; {op.kind} {op.name}"
                   f" needs one of {', '.join(op.roles)}", field="role", user=principal.name,
                   required=list(op.roles), held=sorted(principal.roles))
    fields = op.fields
    changes: dict[str, Any] = {}
    if principal.scoped:
        entity_field = ENTITY_FIELD.get(op.name, "entity")
        if entity_field in fields:
            value = getattr(payload, entity_field)
            if value is None:
                if len(principal.entities) == 1:
                    changes[entity_field] = next(iter(principal.entities))
                else:
                    raise deny(f"{principal.name} may act for {', '.join(sorted(principal.entities))} only;"
                               f" name the {entity_field}", field=entity_field, user=principal.name)
            elif value not in principal.entities:
                raise deny(f"{principal.name} may act for {', '.join(sorted(principal.entities))} only, not {value}",
                           field=entity_field, entity=value, user=principal.name)
        for field, resolve in RECORD_ENTITY.items():
            if field in fields and field != entity_field and getattr(payload, field, None) is not None:
                try:
                    owner = resolve(uow, getattr(payload, field))
                except CloseloopError:
                    continue  # the operation itself reports the missing record
                if (owner is not None and owner not in principal.entities) or (owner is None and op.write):
                    raise deny(f"{field} {getattr(payload, field)} belongs to {owner or 'no entity'};"
                               f" {principal.name} may act for {', '.join(sorted(principal.entities))} only",
                               field=field, record=str(getattr(payload, field)), user=principal.name)
    for field in APPROVER_FIELDS:
        if field not in fields:
            continue
        approver = getattr(payload, field)
        if principal.via in ("user", "key"):
            if approver is None:
                changes[field] = principal.name
            elif approver != principal.name:
                raise deny(f"{principal.name} cannot approve in the name of {approver}; the approver is the"
                           " signed-in user", field=field, user=principal.name, approver=approver)
    if changes:
        payload = dataclasses.replace(payload, **changes)
    rule = SOD_RULES.get(op.name)
    if rule is not None:
        maker = rule(uow, payload)
        approver = next((getattr(payload, f) for f in APPROVER_FIELDS if f in fields and getattr(payload, f)),
                        principal.name)
        if maker is not None and maker == approver:
            raise deny(f"{approver} made this record; segregation of duties needs a second person to approve it",
                       field="approver", maker=maker, user=approver)
    return payload


def scope_result(principal: Principal, op: Operation, result: Any) -> Any:
    """Refuse a result of another entity; drop list items of other entities."""
    if not principal.scoped or not isinstance(result, dict):
        return result
    entity = result.get("entity")
    if isinstance(entity, str) and entity not in principal.entities:
        raise deny(f"{op.name}: the record belongs to {entity}; {principal.name} may see"
                   f" {', '.join(sorted(principal.entities))} only", field="entity", entity=entity,
                   user=principal.name)
    special = RESULT_SCOPE.get(op.name)
    out = dict(result)
    for key, value in result.items():
        if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
            continue
        tag = special[1] if special and special[0] == key else "entity"
        if not any(tag in v for v in value):
            continue
        kept = [v for v in value if principal.may_see(v.get(tag))]
        if len(kept) != len(value):
            out[key] = kept
            if key == "items" and isinstance(out.get("count"), int):
                out["count"] = out["count"] - (len(value) - len(kept))
    return out


class Authorizer:
    """Base: resolve the actor to a principal (None: unrestricted) and apply :func:`check`."""

    def principal(self, uow: Any, actor: str) -> Principal | None:
        raise NotImplementedError

    def authorize(self, uow: Any, op: Operation, payload: Any, actor: str) -> Any:
        principal = self.principal(uow, actor)
        if principal is None:
            return self.unrestricted(uow, op, payload)
        return check(uow, principal, op, payload)

    def unrestricted(self, uow: Any, op: Operation, payload: Any) -> Any:
        return payload

    def check_result(self, uow: Any, op: Operation, payload: Any, result: Any, actor: str) -> Any:
        principal = self.principal(uow, actor)
        return result if principal is None else scope_result(principal, op, result)


def _config_users(raw: Any) -> dict[str, Principal]:
    """Scenario users: ``{alice: {roles: [controller], entities: [UK01]}}``, ``{bob: [billing]}``,
    ``{carol: billing}`` or a list of ``{name, roles, entity|entities}``."""
    out: dict[str, Principal] = {}
    items: list[tuple[str, Any]] = []
    if isinstance(raw, dict):
        items = [(str(k), v) for k, v in raw.items()]
    elif isinstance(raw, list):
        items = [(str(u.get("name")), u) for u in raw if isinstance(u, dict)]
    for name, spec in items:
        if isinstance(spec, str):
            spec = {"roles": [spec]}
        elif isinstance(spec, list):
            spec = {"roles": spec}
        elif not isinstance(spec, dict):
            spec = {}
        roles = spec.get("roles") or ([spec["role"]] if spec.get("role") else list(ROLES))
        entities = spec.get("entities") or ([spec["entity"]] if spec.get("entity") else [])
        out[name] = Principal(name=name, roles=frozenset(roles), entities=frozenset(entities), via="config")
    return out


class ConfigAuthorizer(Authorizer):
    """The default: every user holds every role unless ``services.config["users"]`` defines users."""

    def __init__(self, trusted: str | None = None) -> None:
        self.trusted = trusted

    def _users(self, uow: Any) -> dict[str, Principal] | None:
        services = getattr(uow, "services", None)
        raw = services.config.get("users") if services is not None else None
        if not raw:
            return None
        cache = services.cache("auth.config_users")
        key = id(raw)
        if key not in cache:
            cache.clear()
            cache[key] = _config_users(raw)
        return cache[key]  # type: ignore[no-any-return]

    def principal(self, uow: Any, actor: str) -> Principal | None:
        users = self._users(uow)
        if users is None or actor == self.trusted:
            return None
        found = users.get(actor)
        if found is None:
            raise deny(f"user {actor!r} is not one of the scenario's users ({', '.join(sorted(users))})",
                       field="as", user=actor)
        return found

    def unrestricted(self, uow: Any, op: Operation, payload: Any) -> Any:
        users = self._users(uow)
        if users is None:
            return payload
        for field in APPROVER_FIELDS:
            name = getattr(payload, field, None) if field in op.fields else None
            if name is None:
                continue
            approver = users.get(name)
            if approver is None:
                raise deny(f"approver {name!r} is not one of the scenario's users ({', '.join(sorted(users))})",
                           field=field, user=name)
            check(uow, approver, op, payload)
        return payload


class DbAuthorizer(Authorizer):
    """For the REST API and the web app: every actor is an authenticated user of ``auth_user``."""

    def principal(self, uow: Any, actor: str) -> Principal:
        current = current_principal.get()
        if current is not None and current.name == actor:
            return current
        found = get_user(uow, actor)
        if found is None:
            raise deny(f"{actor!r} is not a closeloop user (add it with `closeloop users add`)", user=actor)
        return found
