"""Customers: the governed customer master.

Owns accounts (external ids per source, legal name, country, tax id, exemption,
hierarchy, bill-to, contracting entity, currency, payment terms, status), the
match-and-merge of duplicates (review list, survivorship, unmerge), CRM imports
(Salesforce, HubSpot) with their quality report, and signed CRM webhooks.
Which source may change which field is decided by the generic system-of-record
registry in :mod:`closeloop.core.governance`.

Modules: ``model`` (pure normalisation, validation, survivorship, quality),
``taxid`` (tax-id validation with python-stdnum), ``matching`` (pure blocking
and scoring), ``store`` (tables), ``service`` (commands, queries, hooks),
``importers`` (file formats and the import plan), ``webhook`` (signatures and
CRM change events), ``demo``.
"""
