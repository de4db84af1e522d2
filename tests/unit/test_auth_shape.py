"""API keys are checked for their shape before any look-up (N6, N10); every RPC names its role."""

from __future__ import annotations

import pytest
from quota.v1 import quota_pb2 as pb
from quota_service import auth


def test_n6_a_key_made_by_create_key_has_the_shape() -> None:
    key_id, secret = "0123456789ab", "A" * 20 + "-" + "z9" * 11
    assert auth.split_key(f"qk_{key_id}_{secret}") == (key_id, secret)


@pytest.mark.parametrize("key", [
    "", "qk__", "qk_nope_nope", "garbage", "qk_0123456789ab_short",
    "qk_" + "a" * 4096 + "_" + "b" * 43,  # a 4 KB key id
    "qk_0123456789AB_" + "b" * 43,  # not lower-case hex
    "qk_0123456789ab_" + "b" * 43 + "_x",  # a third part
    "qk_0123456789ab_" + "b" * 200,  # too long
    "qk_0123456789ab_" + "b" * 42 + "\u00e9",  # not ASCII
])
def test_n6_anything_else_is_unauthenticated_before_a_lookup(key: str) -> None:
    with pytest.raises(auth.Unauthenticated, match="malformed"):
        auth.split_key(key)


def test_n6_every_rpc_of_the_service_names_its_role() -> None:
    methods = {m.name for m in pb.DESCRIPTOR.services_by_name["QuotaService"].methods}
    assert methods <= set(auth.METHOD_ROLES), sorted(methods - set(auth.METHOD_ROLES))
    assert set(auth.METHOD_ROLES.values()) <= set(auth.ROLES)
