"""Stripe-Signature verification: the exact body, the tolerance, secret rotation, malformed headers."""

from __future__ import annotations

import pytest

from closeloop.collections.connectors.stripe import map_event, sign, verify
from closeloop.core.errors import ForbiddenError, ValidationError

BODY = b'{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","amount":500,"currency":"eur"}}}'


def test_valid_signature_and_rotation():
    header = sign("whsec_a", BODY, 1_700_000_000)
    assert verify("whsec_a", BODY, header, now=1_700_000_100) == 1_700_000_000
    rotated = header + "," + sign("whsec_b", BODY, 1_700_000_000).split(",")[1]
    assert verify("whsec_b", BODY, rotated, now=1_700_000_000) == 1_700_000_000


@pytest.mark.parametrize(("secret", "body", "header", "now", "words"), [
    ("whsec_a", BODY + b" ", None, 1_700_000_000, "no Stripe-Signature"),
    ("whsec_a", BODY + b" ", "t=1700000000,v1=00", 1_700_000_000, "does not match"),
    ("whsec_a", BODY, "v1=abc", 1_700_000_000, "no valid t="),
    ("whsec_a", BODY, "t=1700000000", 1_700_000_000, "no v1="),
    ("", BODY, "t=1700000000,v1=00", 1_700_000_000, "no provider webhook secret"),
])
def test_refusals(secret, body, header, now, words):
    with pytest.raises(ForbiddenError, match=words):
        verify(secret, body, header, now=now)


def test_replay_outside_the_tolerance_is_refused():
    header = sign("whsec_a", BODY, 1_700_000_000)
    with pytest.raises(ForbiddenError, match="replayed or delayed"):
        verify("whsec_a", BODY, header, now=1_700_000_301)
    with pytest.raises(ForbiddenError, match="replayed or delayed"):
        verify("whsec_a", BODY, header, now=1_699_999_000)


def test_event_mapping_needs_an_envelope():
    with pytest.raises(ValidationError):
        map_event({"id": "evt_x", "type": "payment_intent.succeeded"})
    action = map_event({"id": "evt_y", "type": "payment_intent.succeeded", "created": 1_700_000_000,
                        "data": {"object": {"id": "pi_1", "amount": 500, "amount_received": 500, "currency": "jpy",
                                            "metadata": {"customer": "SF-1", "invoice": "INV-1"}}}})
    assert (action.amount, action.currency, action.customer, action.invoice, action.date) == (
        500, "JPY", "SF-1", "INV-1", "2023-11-14")
