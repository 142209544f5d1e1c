"""Webhook signatures (closeloop scheme and HubSpot v3): the exact bytes, a recent timestamp, the right secret."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from closeloop.core.errors import ForbiddenError
from closeloop.customers.webhook import sign, verify

BODY = b'{"id":"evt-1","type":"account.upserted","data":{"external_id":"SF-1","name":"Globex"}}'
NOW = 1_767_225_600


def test_closeloop_signature_round_trip():
    header = sign("s3cret", BODY, NOW)
    assert header.startswith(f"t={NOW},v1=")
    assert verify("s3cret", BODY, {"x-closeloop-signature": header}, now=NOW + 10) == "closeloop"


@pytest.mark.parametrize("secret, body, now, reason", [
    ("other", BODY, NOW, "does not match"),
    ("s3cret", BODY + b" ", NOW, "does not match"),
    ("s3cret", BODY, NOW + 301, "more than 300s"),
])
def test_closeloop_signature_refusals(secret, body, now, reason):
    header = sign("s3cret", BODY, NOW)
    with pytest.raises(ForbiddenError) as exc:
        verify(secret, body, {"X-Closeloop-Signature": header}, now=now)
    assert reason in exc.value.message


def test_rotated_secrets_may_send_two_signatures_and_unsigned_requests_are_refused():
    good = sign("new", BODY, NOW).split(",")[1]
    header = f"t={NOW},v1={'0' * 64},{good}"
    assert verify("new", BODY, {"X-Closeloop-Signature": header}, now=NOW) == "closeloop"
    with pytest.raises(ForbiddenError):
        verify("new", BODY, {}, now=NOW)
    with pytest.raises(ForbiddenError):
        verify("", BODY, {"X-Closeloop-Signature": header}, now=NOW)


def test_hubspot_v3_signature():
    uri = "https://closeloop.example.com/api/v1/webhooks/crm"
    stamp = str(NOW * 1000)
    digest = hmac.new(b"hs-secret", b"POST" + uri.encode() + BODY + stamp.encode(), hashlib.sha256).digest()
    headers = {"X-HubSpot-Signature-v3": base64.b64encode(digest).decode(), "X-HubSpot-Request-Timestamp": stamp}
    assert verify("hs-secret", BODY, headers, now=NOW, uri=uri) == "hubspot"
    with pytest.raises(ForbiddenError):
        verify("hs-secret", BODY, headers, now=NOW, uri=uri + "/other")
