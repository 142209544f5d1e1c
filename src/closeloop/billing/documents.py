"""Invoice and credit-memo documents: HTML from a Jinja2 template, PDF through WeasyPrint.

Both render :func:`closeloop.billing.service.invoice_document` — the same dict e-invoicing reads —
so the PDF, the e-invoice and the ledger tell one story: seller and buyer with tax ids, lines with
service periods, the tax summary by treatment and rate, legal mentions, totals, credit applied and
the amount due. The template is kept here (not a file) so an installed package always has it.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, select_autoescape

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ title }} {{ doc.number or "(held)" }}</title>
<style>
  @page { size: A4; margin: 18mm 16mm; }
  body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; font-size: 10pt; color: #1d2433; }
  h1 { font-size: 18pt; margin: 0 0 4mm 0; letter-spacing: .5px; }
  .parties { display: flex; justify-content: space-between; margin-bottom: 6mm; }
  .party { width: 48%; }
  .party h2 { font-size: 9pt; text-transform: uppercase; color: #6b7385; margin: 0 0 1mm 0; }
  .meta td { padding: 0 4mm 1mm 0; }
  table.lines { width: 100%; border-collapse: collapse; margin-top: 4mm; }
  table.lines th { text-align: left; border-bottom: 1px solid #1d2433; font-size: 8.5pt; padding: 1.5mm 1mm; }
  table.lines td { border-bottom: 1px solid #dde1e8; padding: 1.5mm 1mm; vertical-align: top; }
  .num { text-align: right; white-space: nowrap; }
  .period { color: #6b7385; font-size: 8.5pt; }
  table.totals { margin-left: auto; margin-top: 4mm; border-collapse: collapse; }
  table.totals td { padding: 1mm 2mm; }
  table.totals tr.due td { border-top: 1px solid #1d2433; font-weight: bold; }
  .mentions { margin-top: 6mm; font-size: 9pt; }
  .status { display: inline-block; padding: 0 2mm; border: 1px solid #6b7385; border-radius: 2mm; font-size: 8pt; }
</style></head>
<body>
<h1>{{ title }} <span class="status">{{ doc.status }}</span></h1>
<table class="meta">
  <tr><td>Number</td><td><strong>{{ doc.number or "not issued (held)" }}</strong></td></tr>
  <tr><td>Date</td><td>{{ doc.date }}</td></tr>
  {% if doc.kind == "invoice" %}<tr><td>Due date</td><td>{{ doc.due_date }} ({{ doc.payment_terms_days }} days)</td></tr>{% endif %}
  {% if doc.original_invoice %}<tr><td>Credits invoice</td><td>{{ doc.original_invoice }}</td></tr>{% endif %}
  {% if doc.reason %}<tr><td>Reason</td><td>{{ doc.reason }}</td></tr>{% endif %}
  <tr><td>Currency</td><td>{{ doc.currency }}</td></tr>
</table>
<div class="parties">
  <div class="party"><h2>From</h2>
    <strong>{{ doc.seller.name }}</strong><br>
    {{ address(doc.seller.address) }}{{ doc.seller.country }}<br>
    {% if doc.seller.tax_id %}Tax id: {{ doc.seller.tax_id }}{% endif %}
  </div>
  <div class="party"><h2>Bill to</h2>
    <strong>{{ doc.buyer.name }}</strong> ({{ doc.buyer.customer }})<br>
    {{ address(doc.buyer.address) }}{% if doc.buyer.postal_code %}{{ doc.buyer.postal_code }} {% endif %}{% if doc.buyer.region %}{{ doc.buyer.region }} {% endif %}{{ doc.buyer.country }}<br>
    {% if doc.buyer.tax_id %}Tax id: {{ doc.buyer.tax_id }}<br>{% endif %}
    {% if doc.buyer.email %}{{ doc.buyer.email }}{% endif %}
  </div>
</div>
<table class="lines">
  <thead><tr><th>#</th><th>Description</th><th class="num">Qty</th><th class="num">Unit price</th>
  <th class="num">Net</th><th class="num">Tax</th><th>Tax</th></tr></thead>
  <tbody>
  {% for ln in doc.lines %}
  <tr><td>{{ ln.line_no }}</td>
    <td>{{ ln.description }}{% if ln.period_start %}<br><span class="period">{{ ln.period_start }}{% if ln.period_end and ln.period_end != ln.period_start %} &ndash; {{ ln.period_end }}{% endif %}</span>{% endif %}</td>
    <td class="num">{{ ln.quantity }}</td><td class="num">{{ ln.unit_price }}</td>
    <td class="num">{{ ln.net }}</td><td class="num">{{ ln.tax }}</td>
    <td>{{ ln.tax_treatment }} {{ pct(ln.tax_rate) }}</td></tr>
  {% endfor %}
  </tbody>
</table>
<table class="totals">
  {% for g in doc.tax_breakdown %}
  <tr><td>{{ g.treatment }} {{ pct(g.rate) }} ({{ g.category }}) on {{ g.taxable }}</td><td class="num">{{ g.tax }}</td></tr>
  {% endfor %}
  <tr><td>Subtotal</td><td class="num">{{ doc.subtotal }}</td></tr>
  <tr><td>Tax</td><td class="num">{{ doc.tax }}</td></tr>
  <tr><td>Total {{ doc.currency }}</td><td class="num">{{ doc.total }}</td></tr>
  {% if doc.kind == "invoice" %}
  <tr><td>Customer credit applied</td><td class="num">{{ doc.credit_applied }}</td></tr>
  {% if doc.wallet_applied %}<tr><td>Prepaid credits applied</td><td class="num">{{ doc.wallet_applied }}</td></tr>{% endif %}
  <tr class="due"><td>Amount due</td><td class="num">{{ doc.amount_due }} {{ doc.currency }}</td></tr>
  {% endif %}
</table>
{% if doc.mentions %}<div class="mentions">{% for m in doc.mentions %}<p>{{ m }}</p>{% endfor %}</div>{% endif %}
{% for g in doc.tax_breakdown if g.exemption_reason %}<div class="mentions"><p>{{ g.exemption_reason }}</p></div>{% endfor %}
</body></html>
"""


def _address(addr: Any) -> str:
    if not addr:
        return ""
    if isinstance(addr, dict):
        parts = [addr.get(k) for k in ("street", "street2", "city") if addr.get(k)]
        return ", ".join(str(p) for p in parts) + (", " if parts else "")
    return f"{addr}, "


def _pct(rate: Any) -> str:
    if rate in (None, ""):
        return ""
    from decimal import Decimal

    value = Decimal(str(rate)) * 100
    text = format(value.normalize(), "f") if value != value.to_integral_value() else str(int(value))
    return f"{text}%"


_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_ENV.globals.update(address=_address, pct=_pct)
_TEMPLATE = _ENV.from_string(TEMPLATE)


def render_html(doc: dict[str, Any]) -> str:
    """The document as a standalone HTML page."""
    title = "Credit memo" if doc.get("kind") == "credit_memo" else "Invoice"
    return _TEMPLATE.render(doc=doc, title=title)


def render_pdf(doc: dict[str, Any]) -> bytes:
    """The document as PDF (WeasyPrint). Raises RuntimeError naming what is missing when it is not installed."""
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as exc:  # the package, or the system libraries (pango) it needs
        raise RuntimeError(f"PDF rendering needs WeasyPrint and its system libraries (pango): {exc}") from None
    return bytes(HTML(string=render_html(doc)).write_pdf())


def invoice_html(uow: Any, number: str) -> str:
    from closeloop.billing.service import invoice_document

    return render_html(invoice_document(uow, number))


def invoice_pdf(uow: Any, number: str) -> bytes:
    from closeloop.billing.service import invoice_document

    return render_pdf(invoice_document(uow, number))
