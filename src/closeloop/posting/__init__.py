"""Posting rules: the declarative map from business events to journal lines."""
