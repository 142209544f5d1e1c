"""Web application over HTTP (no browser): sign-in, sessions, CSRF, pages, scope, locale formatting."""

from __future__ import annotations

import re
from typing import Any

import pytest

from closeloop.core.exception_queue import open_exception
from tests.api.conftest import PASSWORD

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def login(client: Any, user: str, password: str = PASSWORD, next_: str = "/") -> Any:
    token = CSRF.search(client.get("/login").text).group(1)
    return client.post("/login", data={"username": user, "password": password, "csrf_token": token, "next": next_},
                       follow_redirects=False)


def csrf_of(client: Any, path: str) -> str:
    return CSRF.search(client.get(path).text).group(1)


@pytest.fixture
def seeded(server):
    server.app.do("journal.post", {"entity": "US01", "date": "2026-01-05", "memo": "capital",
                                   "lines": [{"account": "cash", "debit": "1234.50"},
                                             {"account": "3000", "credit": "1234.50"}]}, actor="ctrl")
    with server.app.unit_of_work() as uow:
        us = open_exception(uow, "recon_break", record_type="invoice", record_id="INV-US-1", message="US break",
                            entity="US01", amount=12345, currency="USD")
        de = open_exception(uow, "tax_undetermined", record_type="invoice", record_id="INV-DE-1", message="DE tax",
                            entity="DE01")
    return {"us": us, "de": de}


def test_pages_need_a_session_and_login_sets_a_hardened_cookie(server, client):
    response = client.get("/ledger", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login?next=%2Fledger"
    signed = login(client, "ctrl", next_="/ledger")
    assert signed.status_code == 303 and signed.headers["location"] == "/ledger"
    cookie = signed.headers["set-cookie"]
    assert "closeloop_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    page = client.get("/ledger")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_wrong_password_and_csrf_less_login_are_refused_and_recorded(server, client):
    assert login(client, "ctrl", "wrong-password").status_code == 401
    assert login(client, "nobody", "whatever-else").status_code == 401
    client.cookies.clear()
    forged = client.post("/login", data={"username": "ctrl", "password": PASSWORD}, follow_redirects=False)
    assert forged.status_code == 403 and "closeloop_session" not in forged.headers.get("set-cookie", "")
    with server.app.unit_of_work(write=False) as uow:
        kinds = uow.all("SELECT kind, outcome FROM auth_event WHERE outcome = 'forbidden' ORDER BY id")
    assert [tuple(k) for k in kinds] == [("login", "forbidden"), ("login", "forbidden"), ("csrf", "forbidden")]


def test_login_never_redirects_off_site(server, client):
    assert login(client, "ctrl", next_="//evil.example/x").headers["location"] == "/"
    assert login(client, "ctrl", next_="https://evil.example/").headers["location"] == "/"


def test_every_nav_page_renders(server, client, seeded):
    login(client, "tester")
    nav = server.asgi.state.nav
    assert [e.label for e in nav][:2] == ["Dashboard", "Exceptions"]
    for entry in nav:
        page = client.get(entry.path)
        assert page.status_code == 200, (entry.path, page.text[:500])
        assert 'class="main-nav"' in page.text
    for path in ("/ledger/pnl?period=2026-01", "/ledger/balance-sheet", "/ledger/accounts/1000?entity=US01",
                 "/ledger/journals/JE-US01-0000001", f"/exceptions/{seeded['us']}", "/operations?op=journal.post"):
        assert client.get(path).status_code == 200, path
    assert client.get("/ledger/journals/JE-XX-1").status_code == 404
    assert "not_found" in client.get("/no-such-page").text


def test_resolving_an_exception_needs_the_csrf_token(server, client, seeded):
    login(client, "ctrl")
    path = f"/exceptions/{seeded['us']}"
    refused = client.post(f"{path}/resolve", data={"action": "accept", "reason": "explained"}, follow_redirects=False)
    assert refused.status_code == 403 and "CSRF" in refused.text
    wrong = client.post(f"{path}/resolve", data={"action": "accept", "reason": "x", "csrf_token": "forged"},
                        follow_redirects=False)
    assert wrong.status_code == 403
    with server.app.unit_of_work(write=False) as uow:
        assert uow.scalar("SELECT status FROM exception_item WHERE id = ?", (seeded["us"],)) == "open"
    done = client.post(f"{path}/resolve", data={"action": "accept", "reason": "timing difference",
                                                "csrf_token": csrf_of(client, path)}, follow_redirects=False)
    assert done.status_code == 303
    page = client.get(done.headers["location"]).text
    assert "accept: resolved" in page and "timing difference" in page  # flash and history
    with server.app.unit_of_work(write=False) as uow:
        assert uow.scalar("SELECT actor FROM exception_action WHERE action = 'accept'") == "ctrl"


def test_a_read_only_user_cannot_resolve_and_the_denial_is_audited(server, client, seeded):
    login(client, "reader")
    path = f"/exceptions/{seeded['us']}"
    refused = client.post(f"{path}/resolve", data={"action": "accept", "reason": "x",
                                                   "csrf_token": csrf_of(client, path)})
    assert refused.status_code == 403 and "forbidden" in refused.text
    with server.app.unit_of_work(write=False) as uow:
        assert uow.scalar("SELECT COUNT(*) FROM audit_log WHERE command = 'exception.resolve' AND outcome ="
                          " 'forbidden' AND actor = 'reader'") == 1


def test_entity_scoped_user_sees_only_their_entity(server, client, seeded):
    login(client, "de_ctrl")
    queue = client.get("/exceptions?status=open").text
    assert "DE tax" in queue and "US break" not in queue
    assert client.get(f"/exceptions/{seeded['us']}").status_code in (403, 404)
    assert client.get("/ledger?entity=US01").status_code == 403
    assert client.get("/ledger/journals/JE-US01-0000001").status_code == 403


def test_exception_filters(server, client, seeded):
    login(client, "tester")
    assert "DE tax" not in client.get("/exceptions?kind=recon_break").text
    assert "US break" not in client.get("/exceptions?owner=billing").text
    assert "No exceptions match" in client.get("/exceptions?min_age=5").text
    assert client.get("/exceptions?min_age=abc").status_code == 422


def test_amounts_are_formatted_for_the_readers_locale(server, client, seeded):
    login(client, "ctrl")
    assert "$1,234.50" in client.get("/ledger?entity=US01").text
    assert "1.234,50\xa0$" in client.get("/ledger?entity=US01", headers={"Accept-Language": "de-DE,de;q=0.9"}).text


def test_operations_page_lists_the_registry_and_runs_as_the_user(server, client):
    from closeloop.core import registry

    login(client, "reader")
    page = client.get("/operations").text
    for name in registry.operations():
        assert name in page
    token = csrf_of(client, "/operations")
    ran = client.post("/operations/run", data={"op": "trial_balance", "payload": '{"entity": "US01"}',
                                               "csrf_token": token})
    assert ran.status_code == 200 and "balanced" in ran.text
    denied = client.post("/operations/run", data={"op": "period.close", "payload": '{"entity": "US01", "period":'
                                                  ' "2026-01"}', "csrf_token": token})
    assert denied.status_code == 403 and "forbidden" in denied.text
    assert client.post("/operations/run", data={"op": "trial_balance", "payload": "{}"}).status_code == 403


def test_logout_ends_the_session(server, client):
    login(client, "ctrl")
    token = csrf_of(client, "/")
    assert client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303
