"""Users, API keys and browser sessions: creation, verification, and the auth event trail.

Passwords are hashed with Argon2id (argon2-cffi); API keys and session
tokens are 256-bit random values of which only a SHA-256 digest is stored,
so a copy of the database yields no usable credential. Every failed
authentication and every denial that does not reach a command's audit record
is written to ``auth_event``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from closeloop.core.errors import ConflictError, NotFoundError, ValidationError
from closeloop.core.registry import ROLES

_hasher = PasswordHasher()
# Verifying against this keeps the time of "unknown user" equal to that of "wrong password".
_DUMMY_HASH = _hasher.hash("closeloop-dummy-password")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
SESSION_HOURS = 12
MIN_PASSWORD = 8


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting: a user's name, roles and entity scope (empty: every entity)."""

    name: str
    roles: frozenset[str]
    entities: frozenset[str] = frozenset()
    user_id: int | None = None
    locale: str | None = None
    via: str = "user"  # user (browser session), key (API key), config (scenario users), system

    @property
    def scoped(self) -> bool:
        return bool(self.entities)

    def may_see(self, entity: str | None) -> bool:
        return not self.entities or entity in self.entities


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _split(text: str | None) -> frozenset[str]:
    return frozenset(p for p in (text or "").split(",") if p)


def check_roles(roles: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise ValidationError(f"roles {bad or roles} are not known; roles are {', '.join(ROLES)}", field="role")
    return tuple(dict.fromkeys(roles))


def _principal(row: Any, via: str) -> Principal:
    user_id, name, roles, entities, locale = row
    return Principal(name=name, roles=_split(roles), entities=_split(entities), user_id=int(user_id),
                     locale=locale, via=via)


_USER_COLS = "id, name, roles, entities, locale"


def record_event(uow: Any, kind: str, outcome: str, *, actor: str | None = None, detail: str | None = None,
                 client: str | None = None) -> None:
    uow.execute("INSERT INTO auth_event (at, actor, kind, outcome, detail, client) VALUES (?,?,?,?,?,?)",
                (_now(), (actor or "")[:64] or None, kind, outcome, detail, (client or "")[:64] or None))


# --------------------------------------------------------------------------- users


def add_user(uow: Any, name: str, roles: list[str] | tuple[str, ...], *, entities: list[str] | tuple[str, ...] = (),
             password: str | None = None, locale: str | None = None) -> Principal:
    if not NAME_RE.match(name or ""):
        raise ValidationError(f"user name {name!r} must be 1-64 letters, digits, '.', '_', '@' or '-'", field="name")
    checked = check_roles(list(roles))
    for code in entities:
        if not re.fullmatch(r"[A-Za-z0-9_]{1,16}", code):
            raise ValidationError(f"entity {code!r} is not an entity code", field="entity")
    if password is not None and len(password) < MIN_PASSWORD:
        raise ValidationError(f"a password needs at least {MIN_PASSWORD} characters", field="password")
    if uow.one("SELECT 1 FROM auth_user WHERE name = ?", (name,)):
        raise ConflictError(f"user {name!r} already exists", field="name", record=name)
    now = _now()
    uow.execute(
        "INSERT INTO auth_user (name, password_hash, roles, entities, locale, active, created_at, updated_at)"
        " VALUES (?,?,?,?,?,?,?,?)",
        (name, _hasher.hash(password) if password else None, ",".join(checked), ",".join(entities), locale, True,
         now, now))
    record_event(uow, "user.add", "ok", actor=name, detail=f"roles={','.join(checked)} entities={','.join(entities)}")
    found = get_user(uow, name)
    assert found is not None
    return found


def get_user(uow: Any, name: str, via: str = "user") -> Principal | None:
    row = uow.one(f"SELECT {_USER_COLS} FROM auth_user WHERE name = ? AND active = ?", (name, True))
    return _principal(row, via) if row else None


def list_users(uow: Any) -> list[dict[str, Any]]:
    return [{"name": r[0], "roles": sorted(_split(r[1])), "entities": sorted(_split(r[2])), "active": bool(r[3])}
            for r in uow.all("SELECT name, roles, entities, active FROM auth_user ORDER BY name")]


def set_password(uow: Any, name: str, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValidationError(f"a password needs at least {MIN_PASSWORD} characters", field="password")
    if not uow.one("SELECT 1 FROM auth_user WHERE name = ?", (name,)):
        raise NotFoundError(f"user {name!r} does not exist", field="name", record=name)
    uow.execute("UPDATE auth_user SET password_hash = ?, updated_at = ? WHERE name = ?",
                (_hasher.hash(password), _now(), name))


def verify_password(uow: Any, name: str, password: str, client: str | None = None) -> Principal | None:
    """The user when the password matches; None otherwise (the attempt is recorded either way)."""
    row = uow.one("SELECT id, password_hash FROM auth_user WHERE name = ? AND active = ?", (name, True))
    stored = row[1] if row and row[1] else _DUMMY_HASH
    ok = False
    try:
        ok = _hasher.verify(stored, password) and row is not None and bool(row[1])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    record_event(uow, "login", "ok" if ok else "forbidden", actor=name, client=client,
                 detail=None if ok else "wrong user name or password")
    if not ok:
        return None
    if _hasher.check_needs_rehash(stored):
        uow.execute("UPDATE auth_user SET password_hash = ? WHERE id = ?", (_hasher.hash(password), row[0]))
    return get_user(uow, name)


# --------------------------------------------------------------------------- API keys


def create_key(uow: Any, user: str, label: str | None = None) -> str:
    """A new API key for the user. The key is returned once; only its digest is stored."""
    found = get_user(uow, user)
    if found is None:
        raise NotFoundError(f"user {user!r} does not exist (add it with `closeloop users add`)", field="user",
                            record=user)
    key_id = secrets.token_hex(6)
    key = f"clk_{key_id}_{secrets.token_urlsafe(32)}"
    uow.execute("INSERT INTO auth_api_key (key_id, user_id, key_hash, label, created_at) VALUES (?,?,?,?,?)",
                (key_id, found.user_id, sha256(key), label, _now()))
    record_event(uow, "key.create", "ok", actor=user, detail=f"key_id={key_id}")
    return key


def revoke_key(uow: Any, key_id: str) -> None:
    uow.execute("UPDATE auth_api_key SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL", (_now(), key_id))


_KEY_RE = re.compile(r"^clk_([0-9a-f]{12})_[A-Za-z0-9_-]{20,80}$")


def verify_key(uow: Any, key: str) -> Principal | None:
    match = _KEY_RE.match(key or "")
    if not match:
        return None
    row = uow.one(
        f"SELECT k.key_hash, {', '.join('u.' + c for c in _USER_COLS.split(', '))} FROM auth_api_key k"
        " JOIN auth_user u ON u.id = k.user_id WHERE k.key_id = ? AND k.revoked_at IS NULL AND u.active = ?",
        (match.group(1), True))
    if row is None or not hmac.compare_digest(row[0], sha256(key)):
        return None
    return _principal(row[1:], "key")


# --------------------------------------------------------------------------- sessions


def create_session(uow: Any, principal: Principal) -> tuple[str, str]:
    """(cookie token, CSRF token) for a new browser session."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    uow.execute("INSERT INTO auth_session (token_hash, user_id, csrf_token, created_at, expires_at)"
                " VALUES (?,?,?,?,?)",
                (sha256(token), principal.user_id, csrf, now.isoformat(timespec="seconds"),
                 (now + timedelta(hours=SESSION_HOURS)).isoformat(timespec="seconds")))
    return token, csrf


def session_user(uow: Any, token: str) -> tuple[Principal, str] | None:
    if not token or len(token) > 100:
        return None
    row = uow.one(
        f"SELECT s.csrf_token, s.expires_at, {', '.join('u.' + c for c in _USER_COLS.split(', '))}"
        " FROM auth_session s JOIN auth_user u ON u.id = s.user_id WHERE s.token_hash = ? AND u.active = ?",
        (sha256(token), True))
    if row is None or row[1] < datetime.now(UTC).isoformat(timespec="seconds"):
        return None
    return _principal(row[2:], "user"), row[0]


def end_session(uow: Any, token: str) -> None:
    uow.execute("DELETE FROM auth_session WHERE token_hash = ?", (sha256(token),))
