"""control: reconciliation, the exception workflow, lineage and the audit trail.

- ``recon``: rules as config (``config/recon_rules.yaml``) comparing two sides
  (registered queries or imported files), breaks as ``recon_break`` exceptions;
- ``lineage``: explain any record back to its sources (and forward);
- ``audit``: the command audit log, filtered;
- ``exceptions``: playbooks, age and SLA, assignment.

Control reads every other area through its queries and events, never its tables
(the ledger sides in ``recon_sides`` are the documented exception until the
ledger registers them itself). See docs/integration.md.
"""
