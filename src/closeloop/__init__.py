"""closeloop: open-source order-to-cash.

    import closeloop
    app = closeloop.open()            # ./closeloop.db, or CLOSELOOP_DATABASE_URL
    app.do("entity.create", {"code": "US01", "name": "Acme Inc", "country": "US", "currency": "USD"})
    app.query("trial_balance", {"entity": "US01"})
"""

from __future__ import annotations

from typing import Any

from closeloop.core.errors import CloseloopError, ErrorCode

__version__ = "0.1.0"
__all__ = ["open", "CloseloopError", "ErrorCode", "__version__"]


def open(url: str | None = None, **options: Any) -> Any:  # noqa: A001 - the documented entry point
    """Open closeloop on a database URL (None: ``CLOSELOOP_DATABASE_URL`` or ``./closeloop.db``)."""
    from closeloop.app import App

    return App(url, **options)
