"""Request fingerprints (H4): the hash alone decides whether a retry is the same request; the
per-parameter digests let ALREADY_EXISTS name what differs."""

from __future__ import annotations

from quota_service.domain.model import (
    canonical_hash,
    idempotency_mismatch,
    request_difference,
    request_fingerprint,
    same_request,
)

RESERVE = ("reserve", "ai_dialog", 3, 60000, "", 0, {"room": "r1"}, "")


def test_the_fingerprint_starts_with_the_stored_hash() -> None:
    fp = request_fingerprint(*RESERVE)
    assert fp.partition(".")[0] == canonical_hash(*RESERVE)
    assert same_request(fp, canonical_hash(*RESERVE)), "a hash stored before fingerprints still matches"
    assert same_request(fp, request_fingerprint("reserve", "ai_dialog", 3, 60000, "", 0, {"room": "r1"}, ""))
    assert not same_request(fp, request_fingerprint("reserve", "ai_dialog", 4, 60000, "", 0, {"room": "r1"}, ""))


def test_the_difference_names_the_parameters() -> None:
    first = request_fingerprint(*RESERVE)
    other = request_fingerprint("reserve", "ai_dialog", 5, 60000, "", 0, {"room": "r2"}, "")
    assert request_difference(other, first) == ("", ("amount", "attributes"))
    assert request_difference(request_fingerprint("consume", *RESERVE[1:]), first) == ("reserve", ())
    assert request_difference(other, canonical_hash(*RESERVE)) == ("", ()), "an old record cannot tell"


def test_the_message_names_the_field_and_what_differs() -> None:
    first = request_fingerprint("commit", "h1", 2)
    err = idempotency_mismatch("k1", request_fingerprint("commit", "h1", 3), first)
    assert str(err) == "idempotency_key: 'k1' was already used with different parameters: actual_amount " \
                       "differs from the first request"
    err = idempotency_mismatch("k1", request_fingerprint("release", "h1", 0), first)
    assert str(err) == "idempotency_key: 'k1' was already used for a commit request"
    assert str(idempotency_mismatch("k1", first, "0123")) == \
        "idempotency_key: 'k1' was already used with different parameters"
