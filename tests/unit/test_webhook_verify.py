"""quota_client.webhooks.verify (issue 12): a receiver checks a delivery with the standardwebhooks
library; header names in any case; a clear error for every way a delivery can be wrong; during a
rotation both the old and the new secret verify, after it only the new one."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from quota_client.webhooks import WebhookVerificationError, verify
from quota_service.app.webhooks import new_secret, signing_secrets
from standardwebhooks import Webhook

BODY = json.dumps({"id": "evt_01", "type": "alert.triggered", "timestamp": "2026-01-01T00:00:00.000Z",
                   "data": {"account_id": "acme", "meter": "ai_dialog", "threshold_pct_left": 20}})


def deliver(secrets: list[str], *, body: str = BODY, msg_id: str = "evt_01",
            at: dt.datetime | None = None) -> dict[str, str]:
    """The headers of a delivery signed with each secret, as the dispatcher sends them."""
    at = at or dt.datetime.now(dt.UTC)
    signatures = " ".join(Webhook(s).sign(msg_id, at, body) for s in secrets)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": signatures}


def test_a_signed_delivery_verifies_and_gives_the_event() -> None:
    secret = new_secret()
    event = verify(deliver([secret]), BODY.encode(), secret)
    assert event["id"] == "evt_01" and event["data"]["threshold_pct_left"] == 20
    assert verify(deliver([secret]), BODY, secret) == event  # the body as text too


def test_header_names_in_any_case_and_as_pairs() -> None:
    secret = new_secret()
    headers = deliver([secret])
    upper = {k.upper(): v for k, v in headers.items()}
    title = {"-".join(p.capitalize() for p in k.split("-")): v for k, v in headers.items()}
    for form in (upper, title, list(title.items())):
        assert verify(form, BODY.encode(), secret)["id"] == "evt_01"


def test_a_wrong_secret_or_a_changed_body_is_refused() -> None:
    secret = new_secret()
    with pytest.raises(WebhookVerificationError, match=r"no signature .* was made with the secret"):
        verify(deliver([secret]), BODY.encode(), new_secret())
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify(deliver([secret]), BODY.replace("20", "90").encode(), secret)
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify(deliver([secret], msg_id="evt_02") | {"webhook-id": "evt_01"}, BODY.encode(), secret)


def test_missing_headers_old_timestamps_and_garbage_are_named() -> None:
    secret = new_secret()
    headers = deliver([secret])
    with pytest.raises(WebhookVerificationError, match="missing header: webhook-signature"):
        verify({k: v for k, v in headers.items() if k != "webhook-signature"}, BODY, secret)
    with pytest.raises(WebhookVerificationError, match="missing headers: webhook-id, webhook-timestamp"):
        verify({"webhook-signature": headers["webhook-signature"]}, BODY, secret)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    with pytest.raises(WebhookVerificationError, match="not within 300 s"):
        verify(deliver([secret], at=old), BODY, secret)
    with pytest.raises(WebhookVerificationError, match="not a number"):
        verify(headers | {"webhook-timestamp": "yesterday"}, BODY, secret)
    with pytest.raises(WebhookVerificationError, match="malformed"):
        verify(headers | {"webhook-signature": "v1"}, BODY, secret)
    with pytest.raises(ValueError, match="secret"):
        verify(headers, BODY, "")


def test_rotation_both_secrets_verify_during_the_grace_only_the_new_after() -> None:
    old, new = new_secret(), new_secret()
    until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=24)
    row = {"secret": new, "previous_secret": old, "previous_secret_until": until}
    during = deliver(signing_secrets(row, dt.datetime.now(dt.UTC)))
    assert len(during["webhook-signature"].split(" ")) == 2
    assert verify(during, BODY, old)["id"] == "evt_01"  # a receiver not yet switched
    assert verify(during, BODY, new)["id"] == "evt_01"  # a receiver already switched
    assert verify(during, BODY, [new, old])["id"] == "evt_01"
    after = deliver(signing_secrets(row, until + dt.timedelta(seconds=1)))
    assert len(after["webhook-signature"].split(" ")) == 1
    assert verify(after, BODY, new)["id"] == "evt_01"
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify(after, BODY, old)
    assert verify(after, BODY, [old, new])["id"] == "evt_01"  # a receiver holding both still works
