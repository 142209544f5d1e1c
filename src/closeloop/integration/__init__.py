"""integration: delivering the outbox and connecting closeloop to other systems.

Owns the operation of event delivery (dead letters as ``sync_failed``
exceptions; ``event.retry``, ``event.replay``, ``event.skip``), the
``closeloop worker`` process, outbound webhooks (signed, retried, logged), the
CRM loop-back (per-account state pushed to CRM subscribers) and the diagnostic
probe. The dispatcher itself is ``closeloop.core.events``. See docs/integration.md.
"""
