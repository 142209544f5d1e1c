"""The web pages: one module per area, each with ``router`` (FastAPI APIRouter) and ``nav`` (a NavEntry, or a
list of them; an empty list for pages reached from another section's tabs).

To add a page: write ``closeloop/web/pages/<area>.py`` (see ``closeloop.web.kit`` for the pattern),
its templates under ``web/templates/<area>*.html`` extending ``base.html``, and add the module here.
"""

PAGE_MODULES: tuple[str, ...] = (
    "closeloop.web.pages.dashboard",
    "closeloop.web.pages.exceptions",
    "closeloop.web.pages.customers",
    "closeloop.web.pages.contracts",
    "closeloop.web.pages.invoices",
    "closeloop.web.pages.collections",
    "closeloop.web.pages.ledger",
    "closeloop.web.pages.revenue",
    "closeloop.web.pages.close",
    "closeloop.web.pages.jobs",
    "closeloop.web.pages.operations",
)
