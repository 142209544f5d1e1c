"""CLI of the interfaces: ``closeloop serve``, ``closeloop users add|list|password``, ``closeloop keys create|revoke``."""

from __future__ import annotations

import getpass
import json
import sys
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    from closeloop.cli.main import guarded, open_app, out, state

    users_app = typer.Typer(no_args_is_help=True, help="Users of the web application and the API (roles, entities).")
    keys_app = typer.Typer(no_args_is_help=True, help="API keys (shown once, stored hashed).")
    app.add_typer(users_app, name="users")
    app.add_typer(keys_app, name="keys")

    @app.command("serve")
    def serve(
        host: Annotated[str, typer.Option("--host", help="Interface to listen on")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", help="TCP port")] = 8000,
        workers: Annotated[int, typer.Option("--workers", help="Worker processes (PostgreSQL; SQLite: 1)")] = 1,
        secure_cookies: Annotated[bool, typer.Option("--secure-cookies/--no-secure-cookies",
                                                     help="Mark cookies Secure (on behind HTTPS)")] = False,
    ) -> None:
        """Start the REST API (/api/v1, OpenAPI at /api/v1/openapi.json) and the web application."""
        import os

        import uvicorn

        from closeloop.core.db import resolve_url

        if state.db:
            os.environ["CLOSELOOP_DATABASE_URL"] = resolve_url(state.db)
        if secure_cookies:
            os.environ["CLOSELOOP_SECURE_COOKIES"] = "1"
        with open_app():  # migrate before the workers start
            pass
        out.print(f"closeloop on http://{host}:{port}/  (API: http://{host}:{port}/api/v1/docs)")
        uvicorn.run("closeloop.api.server:from_environment", factory=True, host=host, port=port, workers=workers,
                    log_level="info", proxy_headers=False)

    @users_app.command("add")
    @guarded()
    def users_add(
        name: Annotated[str, typer.Argument(help="User name")],
        role: Annotated[list[str], typer.Option("--role", "-r", help="Role (repeat for several)")],
        entity: Annotated[list[str] | None, typer.Option("--entity", "-e", help="Limit to an entity (repeat)")] = None,
        password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard"
                                                     " input (else asked for on a terminal; none: API keys only)")]
        = False,
        locale: Annotated[str | None, typer.Option("--locale", help="Locale for amounts, e.g. de_DE")] = None,
    ) -> None:
        """Add a user with roles (sales_ops, billing, controller, collections, implementation, admin, read_only)."""
        from closeloop.auth.users import add_user

        password = None
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        elif sys.stdin.isatty():
            password = getpass.getpass("password (empty: API keys only): ") or None
        with open_app() as cl, cl.unit_of_work() as uow:
            user = add_user(uow, name, role, entities=entity or [], password=password, locale=locale)
        out.print(f"user {user.name}: roles {', '.join(sorted(user.roles))}"
                  + (f"; entities {', '.join(sorted(user.entities))}" if user.entities else "; every entity"))

    @users_app.command("list")
    @guarded()
    def users_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """List users with their roles and entities."""
        from closeloop.auth.users import list_users

        with open_app() as cl, cl.unit_of_work(write=False) as uow:
            users = list_users(uow)
        if as_json:
            print(json.dumps(users, indent=2))
            return
        for u in users:
            out.print(f"{u['name']}: {', '.join(u['roles'])}" + (f" [{', '.join(u['entities'])}]" if u["entities"]
                                                                 else "") + ("" if u["active"] else " (inactive)"))

    @users_app.command("password")
    @guarded()
    def users_password(
        name: Annotated[str, typer.Argument()],
        password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
    ) -> None:
        """Set a user's password."""
        from closeloop.auth.users import set_password

        password = sys.stdin.readline().rstrip("\r\n") if password_stdin else getpass.getpass("new password: ")
        with open_app() as cl, cl.unit_of_work() as uow:
            set_password(uow, name, password)
        out.print(f"password of {name} changed")

    @keys_app.command("create")
    @guarded()
    def keys_create(
        user: Annotated[str, typer.Argument(help="The user the key acts as")],
        label: Annotated[str | None, typer.Option("--label", help="What the key is for")] = None,
    ) -> None:
        """Create an API key; it is printed once (only its hash is stored)."""
        from closeloop.auth.users import create_key

        with open_app() as cl, cl.unit_of_work() as uow:
            key = create_key(uow, user, label)
        print(key)

    @keys_app.command("revoke")
    @guarded()
    def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key id (the part after clk_)")]) -> None:
        """Revoke an API key."""
        from closeloop.auth.users import revoke_key

        with open_app() as cl, cl.unit_of_work() as uow:
            revoke_key(uow, key_id)
        out.print(f"key {key_id} revoked")
