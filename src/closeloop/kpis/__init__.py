"""KPIs computed from the data (docs/kpis.md)."""
