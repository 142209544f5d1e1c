"""Playbook text for each exception kind, shown beside the exception.

The text comes from ``docs/playbooks/<kind>.md`` (the exception queue's
config names that folder) when it exists, else from the short defaults
here. Markdown is rendered with raw HTML disabled.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from markdown_it import MarkdownIt
from markupsafe import Markup

DEFAULTS = {
    "sync_failed": "A business event could not be delivered to a handler.\n\n1. Read the error in the details.\n"
                   "2. Fix the cause (missing record, configuration).\n3. **retry** the delivery; **accept** only"
                   " if the event no longer matters, with the reason.",
    "not_owner": "A source tried to change a value it does not own (system-of-record registry).\n\n"
                 "1. Check which system owns the field.\n2. Make the change in the owning system, or **accept**"
                 " to keep the current value.",
    "recon_break": "Two datasets disagree (CRM, billing, ledger, bank).\n\n1. Compare both sides in the details.\n"
                   "2. Correct the wrong side (credit memo, journal, re-import).\n3. Re-run the reconciliation; the"
                   " break closes itself, or **accept** with the reason when it is explained.",
    "tax_undetermined": "An invoice line is held because its tax could not be decided.\n\n1. Complete the"
                        " customer's country, region or tax id, or the product's tax code.\n2. **release** the"
                        " held invoice.",
    "dispute": "A customer disputes an invoice.\n\n1. Gather the evidence.\n2. Resolve the dispute (credit or"
               " rejected) on the dispute itself.",
    "low_confidence_match": "A payment or a customer matched with low confidence.\n\n1. Review the candidate"
                            " match.\n2. **accept** it or **adjust** the match.",
    "import_rejected": "A row of an import was rejected.\n\n1. Read the reason.\n2. Fix the source file and"
                       " import again, or **accept**.",
    "unposted_event": "A business event has not reached the ledger.\n\n1. Check the posting rule for its type.\n"
                      "2. **retry** once fixed.",
    "opportunity_unconvertible": "A closed-won opportunity cannot become a quote (unknown product, missing price,"
                                 " unknown customer).\n\n1. Fix the catalog or customer.\n2. **retry**.",
    "variation_expired": "A local variation's approval has expired.\n\n1. Renew the variation or retire the"
                         " deviation.\n2. **accept** with the decision.",
}

_md = MarkdownIt("commonmark", {"html": False})


def _folders() -> list[Path]:
    here = Path(__file__).resolve()
    return [here.parents[3] / "docs" / "playbooks", Path.cwd() / "docs" / "playbooks"]


def playbook(kind: str, text: str | None = None) -> Markup:
    """The playbook as HTML: ``text`` when the exception query gave one, else the shipped file or default."""
    if text:
        return Markup(_md.render(text))
    return _default(kind)


@lru_cache(maxsize=64)
def _default(kind: str) -> Markup:
    text = DEFAULTS.get(kind, "No playbook yet for this kind: describe the resolution in the reason.")
    if kind.replace("_", "").isalnum():
        for folder in _folders():
            path = folder / f"{kind}.md"
            if path.is_file():
                text = path.read_text(encoding="utf-8")
                break
    return Markup(_md.render(text))
