"""E-invoicing: Factur-X/ZUGFeRD (CII, EN 16931) and UBL 2.1 (Peppol BIS Billing 3.0).

Owns the e-invoice stored with each invoice and credit memo (never changed after it is
stored), each customer's preferred format, the UBL reader, and the business rules checked at
issue and at export. Input is billing's invoice document; nothing here computes an amount.

Modules: ``model`` (pure: business rules, the EN 16931 business-term model), ``ubl`` (UBL
writer with lxml and reader), ``cii`` (CII XML and the PDF/A-3 through the factur-x library),
``store`` (tables), ``service`` (commands, queries, the ``invoice.issued`` hook). See docs/einvoice.md.
"""
