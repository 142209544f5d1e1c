"""Tax: the rules engine that decides treatment and rate for each invoice line, behind an interface.

Owns the tax rules (``config/tax_rules.yaml``: EU VAT rates with their history and
sources, intra-EU reverse charge, B2C digital services at the buyer's rate, UK VAT, US
state sales tax for SaaS, exempt customers, exports) and the per-invoice computation
(one rounding per (treatment, rate) group, allocated back to lines by largest remainder).

Modules: ``model`` (pure: rules, determination, group computation), ``service`` (the
contract billing calls: :func:`~closeloop.tax.service.compute_invoice_tax`, the
:class:`~closeloop.tax.service.TaxEngine` interface, queries). See docs/tax.md.
"""
