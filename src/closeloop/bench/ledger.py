"""Ledger workloads (filled in by the ledger benchmark work)."""
