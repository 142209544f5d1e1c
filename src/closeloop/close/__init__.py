"""Period close: the gated checklist, overrides, locking, reopening and the year-end close."""
