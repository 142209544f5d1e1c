"""Shared fixtures. Every test that touches storage runs on a fresh, migrated database:
SQLite by default, PostgreSQL when CLOSELOOP_TEST_DATABASE names a server (``make test`` runs both)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from closeloop.app import App
from closeloop.core.clock import ScenarioClock
from closeloop.scenarios.fresh import drop_templates, fresh_database

TEST_DATABASE = os.environ.get("CLOSELOOP_TEST_DATABASE") or None


def pytest_report_header(config: Any) -> str:
    return f"closeloop test database: {TEST_DATABASE or 'sqlite (temporary files)'}"


@pytest.fixture(scope="session", autouse=True)
def _drop_template_databases() -> Iterator[None]:
    yield
    drop_templates()


@pytest.fixture
def clock() -> ScenarioClock:
    return ScenarioClock(date(2026, 1, 1))


@pytest.fixture
def db_url() -> Iterator[str]:
    with fresh_database(TEST_DATABASE) as url:
        yield url


@pytest.fixture
def app(db_url: str, clock: ScenarioClock) -> Iterator[App]:
    instance = App(db_url, clock=clock, actor="tester", migrate=False)
    yield instance
    instance.close()


@pytest.fixture
def us01(app: App) -> str:
    app.do("entity.create", {"code": "US01", "name": "Acme Inc", "country": "US", "currency": "USD"})
    return "US01"


@pytest.fixture
def de01(app: App) -> str:
    app.do("entity.create", {"code": "DE01", "name": "Acme GmbH", "country": "DE", "currency": "EUR"})
    return "DE01"


def post(app: App, entity: str, day: str, *lines: tuple[str, str, str], memo: str = "test", **extra: Any) -> dict:
    """post(app, "US01", "2026-01-05", ("cash", "debit", "10.00"), ("3000", "credit", "10.00"))"""
    return app.do("journal.post", {"entity": entity, "date": day, "memo": memo,
                                   "lines": [{"account": a, side: amount} for a, side, amount in lines], **extra})
