from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BatchMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_MODE_UNSPECIFIED: _ClassVar[BatchMode]
    RESERVE: _ClassVar[BatchMode]
    CONSUME: _ClassVar[BatchMode]
    CHECK: _ClassVar[BatchMode]

class DecisionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_STATUS_UNSPECIFIED: _ClassVar[DecisionStatus]
    GRANTED: _ClassVar[DecisionStatus]
    DENIED: _ClassVar[DecisionStatus]

class DenyReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DENY_REASON_UNSPECIFIED: _ClassVar[DenyReason]
    QUOTA_EXHAUSTED: _ClassVar[DenyReason]
    INSUFFICIENT_BALANCE: _ClassVar[DenyReason]
    FEATURE_NOT_IN_PLAN: _ClassVar[DenyReason]
    TRIAL_EXHAUSTED: _ClassVar[DenyReason]
    ACCOUNT_INACTIVE: _ClassVar[DenyReason]

class ExhaustedAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXHAUSTED_ACTION_UNSPECIFIED: _ClassVar[ExhaustedAction]
    HANDOFF_TO_AGENT: _ClassVar[ExhaustedAction]
    DISABLE_WIDGET: _ClassVar[ExhaustedAction]

class AccountStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCOUNT_STATUS_UNSPECIFIED: _ClassVar[AccountStatus]
    ACTIVE: _ClassVar[AccountStatus]
    SUSPENDED: _ClassVar[AccountStatus]
    EXPIRED: _ClassVar[AccountStatus]
BATCH_MODE_UNSPECIFIED: BatchMode
RESERVE: BatchMode
CONSUME: BatchMode
CHECK: BatchMode
DECISION_STATUS_UNSPECIFIED: DecisionStatus
GRANTED: DecisionStatus
DENIED: DecisionStatus
DENY_REASON_UNSPECIFIED: DenyReason
QUOTA_EXHAUSTED: DenyReason
INSUFFICIENT_BALANCE: DenyReason
FEATURE_NOT_IN_PLAN: DenyReason
TRIAL_EXHAUSTED: DenyReason
ACCOUNT_INACTIVE: DenyReason
EXHAUSTED_ACTION_UNSPECIFIED: ExhaustedAction
HANDOFF_TO_AGENT: ExhaustedAction
DISABLE_WIDGET: ExhaustedAction
ACCOUNT_STATUS_UNSPECIFIED: AccountStatus
ACTIVE: AccountStatus
SUSPENDED: AccountStatus
EXPIRED: AccountStatus

class ReserveBatchRequest(_message.Message):
    __slots__ = ("items", "mode")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ReserveRequest]
    mode: BatchMode
    def __init__(self, items: _Optional[_Iterable[_Union[ReserveRequest, _Mapping]]] = ..., mode: _Optional[_Union[BatchMode, str]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ItemResult(_message.Message):
    __slots__ = ("decision", "error", "tag")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    error: ItemError
    tag: int
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ..., tag: _Optional[int] = ...) -> None: ...

class ReserveBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ItemResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ItemResult, _Mapping]]] = ...) -> None: ...

class StreamReserveRequest(_message.Message):
    __slots__ = ("item", "mode", "tag")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    item: ReserveRequest
    mode: BatchMode
    tag: int
    def __init__(self, item: _Optional[_Union[ReserveRequest, _Mapping]] = ..., mode: _Optional[_Union[BatchMode, str]] = ..., tag: _Optional[int] = ...) -> None: ...

class ReserveRequest(_message.Message):
    __slots__ = ("account_id", "meter", "amount", "idempotency_key", "ttl_ms", "dedup_key", "dedup_window_s", "attributes", "feature")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    DEDUP_KEY_FIELD_NUMBER: _ClassVar[int]
    DEDUP_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    meter: str
    amount: int
    idempotency_key: str
    ttl_ms: int
    dedup_key: str
    dedup_window_s: int
    attributes: _containers.ScalarMap[str, str]
    feature: str
    def __init__(self, account_id: _Optional[str] = ..., meter: _Optional[str] = ..., amount: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., ttl_ms: _Optional[int] = ..., dedup_key: _Optional[str] = ..., dedup_window_s: _Optional[int] = ..., attributes: _Optional[_Mapping[str, str]] = ..., feature: _Optional[str] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("account_id", "reservation_id", "actual_amount", "idempotency_key")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    reservation_id: str
    actual_amount: int
    idempotency_key: str
    def __init__(self, account_id: _Optional[str] = ..., reservation_id: _Optional[str] = ..., actual_amount: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("account_id", "reservation_id", "idempotency_key")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    reservation_id: str
    idempotency_key: str
    def __init__(self, account_id: _Optional[str] = ..., reservation_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class GrantPart(_message.Message):
    __slots__ = ("grant_id", "bucket", "amount")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    bucket: str
    amount: int
    def __init__(self, grant_id: _Optional[str] = ..., bucket: _Optional[str] = ..., amount: _Optional[int] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("meter", "threshold_pct_left")
    METER_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_PCT_LEFT_FIELD_NUMBER: _ClassVar[int]
    meter: str
    threshold_pct_left: int
    def __init__(self, meter: _Optional[str] = ..., threshold_pct_left: _Optional[int] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("status", "reason", "action", "reservation_id", "amount", "remaining", "remaining_pct", "dedup_hit", "overage_minor", "overage_currency", "alerts", "parts", "replayed", "expires_at_ms")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    REMAINING_PCT_FIELD_NUMBER: _ClassVar[int]
    DEDUP_HIT_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_MINOR_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    status: DecisionStatus
    reason: DenyReason
    action: ExhaustedAction
    reservation_id: str
    amount: int
    remaining: int
    remaining_pct: float
    dedup_hit: bool
    overage_minor: int
    overage_currency: str
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    parts: _containers.RepeatedCompositeFieldContainer[GrantPart]
    replayed: bool
    expires_at_ms: int
    def __init__(self, status: _Optional[_Union[DecisionStatus, str]] = ..., reason: _Optional[_Union[DenyReason, str]] = ..., action: _Optional[_Union[ExhaustedAction, str]] = ..., reservation_id: _Optional[str] = ..., amount: _Optional[int] = ..., remaining: _Optional[int] = ..., remaining_pct: _Optional[float] = ..., dedup_hit: _Optional[bool] = ..., overage_minor: _Optional[int] = ..., overage_currency: _Optional[str] = ..., alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ..., parts: _Optional[_Iterable[_Union[GrantPart, _Mapping]]] = ..., replayed: _Optional[bool] = ..., expires_at_ms: _Optional[int] = ...) -> None: ...

class GetBalanceRequest(_message.Message):
    __slots__ = ("account_id", "meter")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    meter: str
    def __init__(self, account_id: _Optional[str] = ..., meter: _Optional[str] = ...) -> None: ...

class GrantBalance(_message.Message):
    __slots__ = ("grant_id", "bucket", "source", "priority", "granted", "used", "held", "remaining", "overdraft_limit", "starts_at_ms", "expires_at_ms", "label")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    OVERDRAFT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    STARTS_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    bucket: str
    source: str
    priority: int
    granted: int
    used: int
    held: int
    remaining: int
    overdraft_limit: int
    starts_at_ms: int
    expires_at_ms: int
    label: str
    def __init__(self, grant_id: _Optional[str] = ..., bucket: _Optional[str] = ..., source: _Optional[str] = ..., priority: _Optional[int] = ..., granted: _Optional[int] = ..., used: _Optional[int] = ..., held: _Optional[int] = ..., remaining: _Optional[int] = ..., overdraft_limit: _Optional[int] = ..., starts_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class MeterBalance(_message.Message):
    __slots__ = ("bucket", "granted", "used", "held", "remaining", "remaining_pct")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    REMAINING_PCT_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    granted: int
    used: int
    held: int
    remaining: int
    remaining_pct: float
    def __init__(self, bucket: _Optional[str] = ..., granted: _Optional[int] = ..., used: _Optional[int] = ..., held: _Optional[int] = ..., remaining: _Optional[int] = ..., remaining_pct: _Optional[float] = ...) -> None: ...

class Balance(_message.Message):
    __slots__ = ("account_id", "status", "meters", "grants", "as_of_ms")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    METERS_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    AS_OF_MS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    status: AccountStatus
    meters: _containers.RepeatedCompositeFieldContainer[MeterBalance]
    grants: _containers.RepeatedCompositeFieldContainer[GrantBalance]
    as_of_ms: int
    def __init__(self, account_id: _Optional[str] = ..., status: _Optional[_Union[AccountStatus, str]] = ..., meters: _Optional[_Iterable[_Union[MeterBalance, _Mapping]]] = ..., grants: _Optional[_Iterable[_Union[GrantBalance, _Mapping]]] = ..., as_of_ms: _Optional[int] = ...) -> None: ...

class GrantSpec(_message.Message):
    __slots__ = ("grant_id", "meter", "currency", "amount", "source", "priority", "overdraft_limit", "starts_at_ms", "expires_at_ms", "label")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    OVERDRAFT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    STARTS_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    meter: str
    currency: str
    amount: int
    source: str
    priority: int
    overdraft_limit: int
    starts_at_ms: int
    expires_at_ms: int
    label: str
    def __init__(self, grant_id: _Optional[str] = ..., meter: _Optional[str] = ..., currency: _Optional[str] = ..., amount: _Optional[int] = ..., source: _Optional[str] = ..., priority: _Optional[int] = ..., overdraft_limit: _Optional[int] = ..., starts_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class TopUpRequest(_message.Message):
    __slots__ = ("account_id", "grant", "idempotency_key")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    grant: GrantSpec
    idempotency_key: str
    def __init__(self, account_id: _Optional[str] = ..., grant: _Optional[_Union[GrantSpec, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class TopUpResponse(_message.Message):
    __slots__ = ("grant", "replayed")
    GRANT_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    grant: GrantBalance
    replayed: bool
    def __init__(self, grant: _Optional[_Union[GrantBalance, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class MeterPolicy(_message.Message):
    __slots__ = ("meter", "overage_price_minor", "overage_currency", "exhausted_action", "alert_pct_left")
    METER_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_PRICE_MINOR_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_CURRENCY_FIELD_NUMBER: _ClassVar[int]
    EXHAUSTED_ACTION_FIELD_NUMBER: _ClassVar[int]
    ALERT_PCT_LEFT_FIELD_NUMBER: _ClassVar[int]
    meter: str
    overage_price_minor: int
    overage_currency: str
    exhausted_action: ExhaustedAction
    alert_pct_left: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, meter: _Optional[str] = ..., overage_price_minor: _Optional[int] = ..., overage_currency: _Optional[str] = ..., exhausted_action: _Optional[_Union[ExhaustedAction, str]] = ..., alert_pct_left: _Optional[_Iterable[int]] = ...) -> None: ...

class CreateAccountRequest(_message.Message):
    __slots__ = ("account_id", "org_id", "time_zone", "policies", "idempotency_key")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    org_id: str
    time_zone: str
    policies: _containers.RepeatedCompositeFieldContainer[MeterPolicy]
    idempotency_key: str
    def __init__(self, account_id: _Optional[str] = ..., org_id: _Optional[str] = ..., time_zone: _Optional[str] = ..., policies: _Optional[_Iterable[_Union[MeterPolicy, _Mapping]]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class SetAccountStatusRequest(_message.Message):
    __slots__ = ("account_id", "status", "idempotency_key")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    status: AccountStatus
    idempotency_key: str
    def __init__(self, account_id: _Optional[str] = ..., status: _Optional[_Union[AccountStatus, str]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("account_id", "org_id", "time_zone", "status", "policies", "replayed")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    org_id: str
    time_zone: str
    status: AccountStatus
    policies: _containers.RepeatedCompositeFieldContainer[MeterPolicy]
    replayed: bool
    def __init__(self, account_id: _Optional[str] = ..., org_id: _Optional[str] = ..., time_zone: _Optional[str] = ..., status: _Optional[_Union[AccountStatus, str]] = ..., policies: _Optional[_Iterable[_Union[MeterPolicy, _Mapping]]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("account_id", "product", "plan", "interval", "starts_at_ms", "idempotency_key", "packs")
    class PacksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    STARTS_AT_MS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    PACKS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    product: str
    plan: str
    interval: str
    starts_at_ms: int
    idempotency_key: str
    packs: _containers.ScalarMap[str, int]
    def __init__(self, account_id: _Optional[str] = ..., product: _Optional[str] = ..., plan: _Optional[str] = ..., interval: _Optional[str] = ..., starts_at_ms: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., packs: _Optional[_Mapping[str, int]] = ...) -> None: ...

class GetSubscriptionRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class Subscription(_message.Message):
    __slots__ = ("account_id", "product", "plan", "interval", "catalogue_version", "catalogue_hash", "packs", "anchor_at_ms", "cycle", "cycle_start_ms", "cycle_end_ms", "status", "withheld", "replayed")
    class PacksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    CATALOGUE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CATALOGUE_HASH_FIELD_NUMBER: _ClassVar[int]
    PACKS_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    CYCLE_START_MS_FIELD_NUMBER: _ClassVar[int]
    CYCLE_END_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    product: str
    plan: str
    interval: str
    catalogue_version: int
    catalogue_hash: str
    packs: _containers.ScalarMap[str, int]
    anchor_at_ms: int
    cycle: int
    cycle_start_ms: int
    cycle_end_ms: int
    status: str
    withheld: _containers.RepeatedScalarFieldContainer[str]
    replayed: bool
    def __init__(self, account_id: _Optional[str] = ..., product: _Optional[str] = ..., plan: _Optional[str] = ..., interval: _Optional[str] = ..., catalogue_version: _Optional[int] = ..., catalogue_hash: _Optional[str] = ..., packs: _Optional[_Mapping[str, int]] = ..., anchor_at_ms: _Optional[int] = ..., cycle: _Optional[int] = ..., cycle_start_ms: _Optional[int] = ..., cycle_end_ms: _Optional[int] = ..., status: _Optional[str] = ..., withheld: _Optional[_Iterable[str]] = ..., replayed: _Optional[bool] = ...) -> None: ...
