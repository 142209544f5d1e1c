"""contracts: opportunities, quotes (versions, approvals), contracts (amendments, renewals, cancellations).

- ``schedule.py``   billing periods on the billing day and the prorated value of a line (pure);
- ``model.py``      contract lines, the change log, its replay into a timeline, TCV/ACV/MRR (pure);
- ``approvals.py``  approval rules (config/approval_rules.yaml), validated on load, evaluated purely;
- ``pricing.py``    quote input -> priced lines (reads the catalogue, writes nothing);
- ``service.py``    quote and contract commands, queries and the contract.* / quote.* events;
- ``opportunities.py`` CRM opportunities (upsert, webhook, Salesforce imports) -> quotes;
- ``salesforce.py`` Salesforce records -> opportunity payloads (pure);
- ``demo.py``       the demo company's catalogue, quotes and contracts.

Billing and revenue recognition act on the contract events only (docs/events.md); other areas may
call :func:`closeloop.contracts.service.contract_view` / ``contract_state``.
"""
