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

class Notice(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTICE_UNSPECIFIED: _ClassVar[Notice]
    NOTICE_RUNNING_LOW: _ClassVar[Notice]
    NOTICE_RAN_OUT: _ClassVar[Notice]

class ChangeTiming(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_TIMING_UNSPECIFIED: _ClassVar[ChangeTiming]
    AT_CYCLE_END: _ClassVar[ChangeTiming]
    NOW: _ClassVar[ChangeTiming]
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
NOTICE_UNSPECIFIED: Notice
NOTICE_RUNNING_LOW: Notice
NOTICE_RAN_OUT: Notice
CHANGE_TIMING_UNSPECIFIED: ChangeTiming
AT_CYCLE_END: ChangeTiming
NOW: ChangeTiming

class ReserveBatchRequest(_message.Message):
    __slots__ = ("items", "mode")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ReserveRequest]
    mode: BatchMode
    def __init__(self, items: _Optional[_Iterable[_Union[ReserveRequest, _Mapping]]] = ..., mode: _Optional[_Union[BatchMode, str]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message", "reason", "field")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    reason: str
    field: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., reason: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("account_id", "meter", "as_of_ms")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    AS_OF_MS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    meter: str
    as_of_ms: int
    def __init__(self, account_id: _Optional[str] = ..., meter: _Optional[str] = ..., as_of_ms: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("bucket", "granted", "used", "held", "remaining", "remaining_pct", "notice", "notice_threshold_pct_left")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    REMAINING_PCT_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    NOTICE_THRESHOLD_PCT_LEFT_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    granted: int
    used: int
    held: int
    remaining: int
    remaining_pct: float
    notice: Notice
    notice_threshold_pct_left: int
    def __init__(self, bucket: _Optional[str] = ..., granted: _Optional[int] = ..., used: _Optional[int] = ..., held: _Optional[int] = ..., remaining: _Optional[int] = ..., remaining_pct: _Optional[float] = ..., notice: _Optional[_Union[Notice, str]] = ..., notice_threshold_pct_left: _Optional[int] = ...) -> None: ...

class Balance(_message.Message):
    __slots__ = ("account_id", "status", "meters", "grants", "as_of_ms", "cycle_start_ms", "cycle_end_ms", "time_zone")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    METERS_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    AS_OF_MS_FIELD_NUMBER: _ClassVar[int]
    CYCLE_START_MS_FIELD_NUMBER: _ClassVar[int]
    CYCLE_END_MS_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    status: AccountStatus
    meters: _containers.RepeatedCompositeFieldContainer[MeterBalance]
    grants: _containers.RepeatedCompositeFieldContainer[GrantBalance]
    as_of_ms: int
    cycle_start_ms: int
    cycle_end_ms: int
    time_zone: str
    def __init__(self, account_id: _Optional[str] = ..., status: _Optional[_Union[AccountStatus, str]] = ..., meters: _Optional[_Iterable[_Union[MeterBalance, _Mapping]]] = ..., grants: _Optional[_Iterable[_Union[GrantBalance, _Mapping]]] = ..., as_of_ms: _Optional[int] = ..., cycle_start_ms: _Optional[int] = ..., cycle_end_ms: _Optional[int] = ..., time_zone: _Optional[str] = ...) -> None: ...

class GrantSpec(_message.Message):
    __slots__ = ("grant_id", "meter", "currency", "amount", "source", "priority", "overdraft_limit", "starts_at_ms", "expires_at_ms", "label", "kind")
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
    KIND_FIELD_NUMBER: _ClassVar[int]
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
    kind: str
    def __init__(self, grant_id: _Optional[str] = ..., meter: _Optional[str] = ..., currency: _Optional[str] = ..., amount: _Optional[int] = ..., source: _Optional[str] = ..., priority: _Optional[int] = ..., overdraft_limit: _Optional[int] = ..., starts_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., label: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class TopUpRequest(_message.Message):
    __slots__ = ("account_id", "grant", "idempotency_key")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    grant: GrantSpec
    idempotency_key: str
    def __init__(self, account_id: _Optional[str] = ..., grant: _Optional[_Union[GrantSpec, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class AdjustRequest(_message.Message):
    __slots__ = ("account_id", "grant_id", "amount", "reason", "idempotency_key")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    grant_id: str
    amount: int
    reason: str
    idempotency_key: str
    def __init__(self, account_id: _Optional[str] = ..., grant_id: _Optional[str] = ..., amount: _Optional[int] = ..., reason: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("account_id", "org_id", "time_zone", "status", "policies", "replayed", "owner_id", "billing_emails", "language")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    BILLING_EMAILS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    org_id: str
    time_zone: str
    status: AccountStatus
    policies: _containers.RepeatedCompositeFieldContainer[MeterPolicy]
    replayed: bool
    owner_id: str
    billing_emails: _containers.RepeatedScalarFieldContainer[str]
    language: str
    def __init__(self, account_id: _Optional[str] = ..., org_id: _Optional[str] = ..., time_zone: _Optional[str] = ..., status: _Optional[_Union[AccountStatus, str]] = ..., policies: _Optional[_Iterable[_Union[MeterPolicy, _Mapping]]] = ..., replayed: _Optional[bool] = ..., owner_id: _Optional[str] = ..., billing_emails: _Optional[_Iterable[str]] = ..., language: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("account_id", "product", "plan", "interval", "catalogue_version", "catalogue_hash", "packs", "anchor_at_ms", "cycle", "cycle_start_ms", "cycle_end_ms", "status", "withheld", "replayed", "pending_change")
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
    PENDING_CHANGE_FIELD_NUMBER: _ClassVar[int]
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
    pending_change: PlanChange
    def __init__(self, account_id: _Optional[str] = ..., product: _Optional[str] = ..., plan: _Optional[str] = ..., interval: _Optional[str] = ..., catalogue_version: _Optional[int] = ..., catalogue_hash: _Optional[str] = ..., packs: _Optional[_Mapping[str, int]] = ..., anchor_at_ms: _Optional[int] = ..., cycle: _Optional[int] = ..., cycle_start_ms: _Optional[int] = ..., cycle_end_ms: _Optional[int] = ..., status: _Optional[str] = ..., withheld: _Optional[_Iterable[str]] = ..., replayed: _Optional[bool] = ..., pending_change: _Optional[_Union[PlanChange, _Mapping]] = ...) -> None: ...

class PlanChange(_message.Message):
    __slots__ = ("plan", "interval", "packs", "effective_at_ms")
    class PacksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    PLAN_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    PACKS_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_AT_MS_FIELD_NUMBER: _ClassVar[int]
    plan: str
    interval: str
    packs: _containers.ScalarMap[str, int]
    effective_at_ms: int
    def __init__(self, plan: _Optional[str] = ..., interval: _Optional[str] = ..., packs: _Optional[_Mapping[str, int]] = ..., effective_at_ms: _Optional[int] = ...) -> None: ...

class ExtendSubscriptionRequest(_message.Message):
    __slots__ = ("account_id", "days", "idempotency_key")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    days: int
    idempotency_key: str
    def __init__(self, account_id: _Optional[str] = ..., days: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ChangeOwnerRequest(_message.Message):
    __slots__ = ("account_id", "owner_id", "idempotency_key")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    owner_id: str
    idempotency_key: str
    def __init__(self, account_id: _Optional[str] = ..., owner_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ChangePlanRequest(_message.Message):
    __slots__ = ("account_id", "plan", "interval", "packs", "when", "idempotency_key")
    class PacksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    PACKS_FIELD_NUMBER: _ClassVar[int]
    WHEN_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    plan: str
    interval: str
    packs: _containers.ScalarMap[str, int]
    when: ChangeTiming
    idempotency_key: str
    def __init__(self, account_id: _Optional[str] = ..., plan: _Optional[str] = ..., interval: _Optional[str] = ..., packs: _Optional[_Mapping[str, int]] = ..., when: _Optional[_Union[ChangeTiming, str]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class UsageFilter(_message.Message):
    __slots__ = ("account_id", "from_ms", "to_ms", "meter", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TO_MS_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    from_ms: int
    to_ms: int
    meter: str
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, account_id: _Optional[str] = ..., from_ms: _Optional[int] = ..., to_ms: _Optional[int] = ..., meter: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListUsageRequest(_message.Message):
    __slots__ = ("filter", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: UsageFilter
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[UsageFilter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class UsageRow(_message.Message):
    __slots__ = ("entry_id", "account_id", "occurred_at_ms", "meter", "bucket", "grant_id", "kind", "amount", "running_used", "attributes", "idempotency_key")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    RUNNING_USED_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    entry_id: int
    account_id: str
    occurred_at_ms: int
    meter: str
    bucket: str
    grant_id: str
    kind: str
    amount: int
    running_used: int
    attributes: _containers.ScalarMap[str, str]
    idempotency_key: str
    def __init__(self, entry_id: _Optional[int] = ..., account_id: _Optional[str] = ..., occurred_at_ms: _Optional[int] = ..., meter: _Optional[str] = ..., bucket: _Optional[str] = ..., grant_id: _Optional[str] = ..., kind: _Optional[str] = ..., amount: _Optional[int] = ..., running_used: _Optional[int] = ..., attributes: _Optional[_Mapping[str, str]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class UsagePage(_message.Message):
    __slots__ = ("rows", "next_page_token")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[UsageRow]
    next_page_token: str
    def __init__(self, rows: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ExportUsageRequest(_message.Message):
    __slots__ = ("filter", "attribute_columns", "raw")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    filter: UsageFilter
    attribute_columns: _containers.RepeatedScalarFieldContainer[str]
    raw: bool
    def __init__(self, filter: _Optional[_Union[UsageFilter, _Mapping]] = ..., attribute_columns: _Optional[_Iterable[str]] = ..., raw: _Optional[bool] = ...) -> None: ...

class ExportChunk(_message.Message):
    __slots__ = ("csv", "rows")
    CSV_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    csv: bytes
    rows: int
    def __init__(self, csv: _Optional[bytes] = ..., rows: _Optional[int] = ...) -> None: ...

class GetTrendRequest(_message.Message):
    __slots__ = ("account_id", "from_ms", "to_ms", "meter", "group_by", "granularity")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TO_MS_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    from_ms: int
    to_ms: int
    meter: str
    group_by: str
    granularity: str
    def __init__(self, account_id: _Optional[str] = ..., from_ms: _Optional[int] = ..., to_ms: _Optional[int] = ..., meter: _Optional[str] = ..., group_by: _Optional[str] = ..., granularity: _Optional[str] = ...) -> None: ...

class TrendPoint(_message.Message):
    __slots__ = ("start_ms", "label", "amount", "events")
    START_MS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    start_ms: int
    label: str
    amount: int
    events: int
    def __init__(self, start_ms: _Optional[int] = ..., label: _Optional[str] = ..., amount: _Optional[int] = ..., events: _Optional[int] = ...) -> None: ...

class TrendSeries(_message.Message):
    __slots__ = ("meter", "group", "points")
    METER_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    meter: str
    group: str
    points: _containers.RepeatedCompositeFieldContainer[TrendPoint]
    def __init__(self, meter: _Optional[str] = ..., group: _Optional[str] = ..., points: _Optional[_Iterable[_Union[TrendPoint, _Mapping]]] = ...) -> None: ...

class Trend(_message.Message):
    __slots__ = ("time_zone", "series")
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    time_zone: str
    series: _containers.RepeatedCompositeFieldContainer[TrendSeries]
    def __init__(self, time_zone: _Optional[str] = ..., series: _Optional[_Iterable[_Union[TrendSeries, _Mapping]]] = ...) -> None: ...

class ListTransactionsRequest(_message.Message):
    __slots__ = ("account_id", "from_ms", "to_ms", "kinds", "page_size", "page_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TO_MS_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    from_ms: int
    to_ms: int
    kinds: _containers.RepeatedScalarFieldContainer[str]
    page_size: int
    page_token: str
    def __init__(self, account_id: _Optional[str] = ..., from_ms: _Optional[int] = ..., to_ms: _Optional[int] = ..., kinds: _Optional[_Iterable[str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class Transaction(_message.Message):
    __slots__ = ("entry_id", "occurred_at_ms", "kind", "grant_id", "bucket", "amount", "source", "label", "idempotency_key")
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    entry_id: int
    occurred_at_ms: int
    kind: str
    grant_id: str
    bucket: str
    amount: int
    source: str
    label: str
    idempotency_key: str
    def __init__(self, entry_id: _Optional[int] = ..., occurred_at_ms: _Optional[int] = ..., kind: _Optional[str] = ..., grant_id: _Optional[str] = ..., bucket: _Optional[str] = ..., amount: _Optional[int] = ..., source: _Optional[str] = ..., label: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class TransactionPage(_message.Message):
    __slots__ = ("transactions", "next_page_token")
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    transactions: _containers.RepeatedCompositeFieldContainer[Transaction]
    next_page_token: str
    def __init__(self, transactions: _Optional[_Iterable[_Union[Transaction, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetStatementRequest(_message.Message):
    __slots__ = ("account_id", "cycle")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    cycle: int
    def __init__(self, account_id: _Optional[str] = ..., cycle: _Optional[int] = ...) -> None: ...

class StatementLine(_message.Message):
    __slots__ = ("bucket", "opening", "granted", "used", "forfeited", "closing", "overage_units", "overage_minor", "overage_currency")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    OPENING_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    FORFEITED_FIELD_NUMBER: _ClassVar[int]
    CLOSING_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_UNITS_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_MINOR_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_CURRENCY_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    opening: int
    granted: int
    used: int
    forfeited: int
    closing: int
    overage_units: int
    overage_minor: int
    overage_currency: str
    def __init__(self, bucket: _Optional[str] = ..., opening: _Optional[int] = ..., granted: _Optional[int] = ..., used: _Optional[int] = ..., forfeited: _Optional[int] = ..., closing: _Optional[int] = ..., overage_units: _Optional[int] = ..., overage_minor: _Optional[int] = ..., overage_currency: _Optional[str] = ...) -> None: ...

class Statement(_message.Message):
    __slots__ = ("account_id", "product", "plan", "cycle", "cycle_start_ms", "cycle_end_ms", "closed", "lines", "transactions")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    CYCLE_START_MS_FIELD_NUMBER: _ClassVar[int]
    CYCLE_END_MS_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    product: str
    plan: str
    cycle: int
    cycle_start_ms: int
    cycle_end_ms: int
    closed: bool
    lines: _containers.RepeatedCompositeFieldContainer[StatementLine]
    transactions: _containers.RepeatedCompositeFieldContainer[Transaction]
    def __init__(self, account_id: _Optional[str] = ..., product: _Optional[str] = ..., plan: _Optional[str] = ..., cycle: _Optional[int] = ..., cycle_start_ms: _Optional[int] = ..., cycle_end_ms: _Optional[int] = ..., closed: _Optional[bool] = ..., lines: _Optional[_Iterable[_Union[StatementLine, _Mapping]]] = ..., transactions: _Optional[_Iterable[_Union[Transaction, _Mapping]]] = ...) -> None: ...

class ListAccountsRequest(_message.Message):
    __slots__ = ("org_id", "page_size", "page_token")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    page_size: int
    page_token: str
    def __init__(self, org_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class AccountOverview(_message.Message):
    __slots__ = ("account_id", "org_id", "status", "product", "plan", "interval", "cycle_end_ms", "meters", "next_expiry_ms", "pending_change", "owner_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    CYCLE_END_MS_FIELD_NUMBER: _ClassVar[int]
    METERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_EXPIRY_MS_FIELD_NUMBER: _ClassVar[int]
    PENDING_CHANGE_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    org_id: str
    status: AccountStatus
    product: str
    plan: str
    interval: str
    cycle_end_ms: int
    meters: _containers.RepeatedCompositeFieldContainer[MeterBalance]
    next_expiry_ms: int
    pending_change: PlanChange
    owner_id: str
    def __init__(self, account_id: _Optional[str] = ..., org_id: _Optional[str] = ..., status: _Optional[_Union[AccountStatus, str]] = ..., product: _Optional[str] = ..., plan: _Optional[str] = ..., interval: _Optional[str] = ..., cycle_end_ms: _Optional[int] = ..., meters: _Optional[_Iterable[_Union[MeterBalance, _Mapping]]] = ..., next_expiry_ms: _Optional[int] = ..., pending_change: _Optional[_Union[PlanChange, _Mapping]] = ..., owner_id: _Optional[str] = ...) -> None: ...

class AccountPage(_message.Message):
    __slots__ = ("accounts", "next_page_token")
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[AccountOverview]
    next_page_token: str
    def __init__(self, accounts: _Optional[_Iterable[_Union[AccountOverview, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchAlertsRequest(_message.Message):
    __slots__ = ("account_id", "org_id", "after_event_id", "types")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    org_id: str
    after_event_id: int
    types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, account_id: _Optional[str] = ..., org_id: _Optional[str] = ..., after_event_id: _Optional[int] = ..., types: _Optional[_Iterable[str]] = ...) -> None: ...

class AlertEvent(_message.Message):
    __slots__ = ("event_id", "account_id", "meter", "threshold_pct_left", "cycle_start_ms", "occurred_at_ms", "idempotency_key", "id", "type", "org_id", "data_json")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_PCT_LEFT_FIELD_NUMBER: _ClassVar[int]
    CYCLE_START_MS_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    event_id: int
    account_id: str
    meter: str
    threshold_pct_left: int
    cycle_start_ms: int
    occurred_at_ms: int
    idempotency_key: str
    id: str
    type: str
    org_id: str
    data_json: str
    def __init__(self, event_id: _Optional[int] = ..., account_id: _Optional[str] = ..., meter: _Optional[str] = ..., threshold_pct_left: _Optional[int] = ..., cycle_start_ms: _Optional[int] = ..., occurred_at_ms: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., id: _Optional[str] = ..., type: _Optional[str] = ..., org_id: _Optional[str] = ..., data_json: _Optional[str] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("account_id", "page_size", "after_account_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    AFTER_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    page_size: int
    after_account_id: str
    def __init__(self, account_id: _Optional[str] = ..., page_size: _Optional[int] = ..., after_account_id: _Optional[str] = ...) -> None: ...

class VerifyDifference(_message.Message):
    __slots__ = ("account_id", "grant_id", "store", "field", "expected", "actual", "detail", "repaired")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    REPAIRED_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    grant_id: str
    store: str
    field: str
    expected: int
    actual: int
    detail: str
    repaired: bool
    def __init__(self, account_id: _Optional[str] = ..., grant_id: _Optional[str] = ..., store: _Optional[str] = ..., field: _Optional[str] = ..., expected: _Optional[int] = ..., actual: _Optional[int] = ..., detail: _Optional[str] = ..., repaired: _Optional[bool] = ...) -> None: ...

class VerifyPage(_message.Message):
    __slots__ = ("accounts", "grants", "differences", "in_flight", "rebuilt", "last_account_id")
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCES_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    REBUILT_FIELD_NUMBER: _ClassVar[int]
    LAST_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    accounts: int
    grants: int
    differences: _containers.RepeatedCompositeFieldContainer[VerifyDifference]
    in_flight: _containers.RepeatedScalarFieldContainer[str]
    rebuilt: _containers.RepeatedScalarFieldContainer[str]
    last_account_id: str
    def __init__(self, accounts: _Optional[int] = ..., grants: _Optional[int] = ..., differences: _Optional[_Iterable[_Union[VerifyDifference, _Mapping]]] = ..., in_flight: _Optional[_Iterable[str]] = ..., rebuilt: _Optional[_Iterable[str]] = ..., last_account_id: _Optional[str] = ...) -> None: ...

class WebhookEndpoint(_message.Message):
    __slots__ = ("endpoint_id", "account_id", "org_id", "url", "event_types", "description", "enabled", "disabled_reason", "created_at_ms", "updated_at_ms", "previous_secret_until_ms")
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    DISABLED_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SECRET_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: str
    account_id: str
    org_id: str
    url: str
    event_types: _containers.RepeatedScalarFieldContainer[str]
    description: str
    enabled: bool
    disabled_reason: str
    created_at_ms: int
    updated_at_ms: int
    previous_secret_until_ms: int
    def __init__(self, endpoint_id: _Optional[str] = ..., account_id: _Optional[str] = ..., org_id: _Optional[str] = ..., url: _Optional[str] = ..., event_types: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., enabled: _Optional[bool] = ..., disabled_reason: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., updated_at_ms: _Optional[int] = ..., previous_secret_until_ms: _Optional[int] = ...) -> None: ...

class CreateWebhookEndpointRequest(_message.Message):
    __slots__ = ("account_id", "org_id", "url", "event_types", "description", "idempotency_key")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    org_id: str
    url: str
    event_types: _containers.RepeatedScalarFieldContainer[str]
    description: str
    idempotency_key: str
    def __init__(self, account_id: _Optional[str] = ..., org_id: _Optional[str] = ..., url: _Optional[str] = ..., event_types: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class CreateWebhookEndpointResponse(_message.Message):
    __slots__ = ("endpoint", "secret", "replayed")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    endpoint: WebhookEndpoint
    secret: str
    replayed: bool
    def __init__(self, endpoint: _Optional[_Union[WebhookEndpoint, _Mapping]] = ..., secret: _Optional[str] = ..., replayed: _Optional[bool] = ...) -> None: ...

class ListWebhookEndpointsRequest(_message.Message):
    __slots__ = ("account_id", "org_id", "page_size", "page_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    org_id: str
    page_size: int
    page_token: str
    def __init__(self, account_id: _Optional[str] = ..., org_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListWebhookEndpointsResponse(_message.Message):
    __slots__ = ("endpoints", "next_page_token")
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    endpoints: _containers.RepeatedCompositeFieldContainer[WebhookEndpoint]
    next_page_token: str
    def __init__(self, endpoints: _Optional[_Iterable[_Union[WebhookEndpoint, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SetWebhookEndpointEnabledRequest(_message.Message):
    __slots__ = ("endpoint_id", "enabled", "idempotency_key")
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: str
    enabled: bool
    idempotency_key: str
    def __init__(self, endpoint_id: _Optional[str] = ..., enabled: _Optional[bool] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class SetWebhookEndpointEnabledResponse(_message.Message):
    __slots__ = ("endpoint", "replayed")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    endpoint: WebhookEndpoint
    replayed: bool
    def __init__(self, endpoint: _Optional[_Union[WebhookEndpoint, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class RotateWebhookSecretRequest(_message.Message):
    __slots__ = ("endpoint_id", "grace_seconds", "idempotency_key")
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: str
    grace_seconds: int
    idempotency_key: str
    def __init__(self, endpoint_id: _Optional[str] = ..., grace_seconds: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class RotateWebhookSecretResponse(_message.Message):
    __slots__ = ("endpoint", "secret", "replayed")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    endpoint: WebhookEndpoint
    secret: str
    replayed: bool
    def __init__(self, endpoint: _Optional[_Union[WebhookEndpoint, _Mapping]] = ..., secret: _Optional[str] = ..., replayed: _Optional[bool] = ...) -> None: ...

class DeleteWebhookEndpointRequest(_message.Message):
    __slots__ = ("endpoint_id", "idempotency_key")
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: str
    idempotency_key: str
    def __init__(self, endpoint_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class DeleteWebhookEndpointResponse(_message.Message):
    __slots__ = ("endpoint_id", "replayed")
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: str
    replayed: bool
    def __init__(self, endpoint_id: _Optional[str] = ..., replayed: _Optional[bool] = ...) -> None: ...

class SetBillingContactsRequest(_message.Message):
    __slots__ = ("account_id", "emails", "language", "idempotency_key")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    EMAILS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    emails: _containers.RepeatedScalarFieldContainer[str]
    language: str
    idempotency_key: str
    def __init__(self, account_id: _Optional[str] = ..., emails: _Optional[_Iterable[str]] = ..., language: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ListDeliveriesRequest(_message.Message):
    __slots__ = ("endpoint_id", "account_id", "page_size", "page_token")
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: str
    account_id: str
    page_size: int
    page_token: str
    def __init__(self, endpoint_id: _Optional[str] = ..., account_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDeliveriesResponse(_message.Message):
    __slots__ = ("deliveries", "next_page_token")
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[Delivery]
    next_page_token: str
    def __init__(self, deliveries: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("delivery_id", "event_id", "event_type", "account_id", "channel", "endpoint_id", "recipient", "status", "attempt_count", "next_attempt_at_ms", "last_status_code", "last_error", "created_at_ms", "delivered_at_ms", "attempts")
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_COUNT_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    delivery_id: int
    event_id: str
    event_type: str
    account_id: str
    channel: str
    endpoint_id: str
    recipient: str
    status: str
    attempt_count: int
    next_attempt_at_ms: int
    last_status_code: int
    last_error: str
    created_at_ms: int
    delivered_at_ms: int
    attempts: _containers.RepeatedCompositeFieldContainer[DeliveryAttempt]
    def __init__(self, delivery_id: _Optional[int] = ..., event_id: _Optional[str] = ..., event_type: _Optional[str] = ..., account_id: _Optional[str] = ..., channel: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., recipient: _Optional[str] = ..., status: _Optional[str] = ..., attempt_count: _Optional[int] = ..., next_attempt_at_ms: _Optional[int] = ..., last_status_code: _Optional[int] = ..., last_error: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., delivered_at_ms: _Optional[int] = ..., attempts: _Optional[_Iterable[_Union[DeliveryAttempt, _Mapping]]] = ...) -> None: ...

class DeliveryAttempt(_message.Message):
    __slots__ = ("attempted_at_ms", "status_code", "latency_ms", "response", "error", "outcome")
    ATTEMPTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    attempted_at_ms: int
    status_code: int
    latency_ms: int
    response: str
    error: str
    outcome: str
    def __init__(self, attempted_at_ms: _Optional[int] = ..., status_code: _Optional[int] = ..., latency_ms: _Optional[int] = ..., response: _Optional[str] = ..., error: _Optional[str] = ..., outcome: _Optional[str] = ...) -> None: ...

class ReplayDeliveriesRequest(_message.Message):
    __slots__ = ("delivery_id", "endpoint_id", "since_event_id", "idempotency_key")
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    delivery_id: int
    endpoint_id: str
    since_event_id: str
    idempotency_key: str
    def __init__(self, delivery_id: _Optional[int] = ..., endpoint_id: _Optional[str] = ..., since_event_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ReplayDeliveriesResponse(_message.Message):
    __slots__ = ("deliveries", "replayed")
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    deliveries: int
    replayed: bool
    def __init__(self, deliveries: _Optional[int] = ..., replayed: _Optional[bool] = ...) -> None: ...

class ListCatalogueRequest(_message.Message):
    __slots__ = ("product",)
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    product: str
    def __init__(self, product: _Optional[str] = ...) -> None: ...

class ListCatalogueResponse(_message.Message):
    __slots__ = ("products",)
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    products: _containers.RepeatedCompositeFieldContainer[CatalogueProduct]
    def __init__(self, products: _Optional[_Iterable[_Union[CatalogueProduct, _Mapping]]] = ...) -> None: ...

class CatalogueProduct(_message.Message):
    __slots__ = ("product", "title", "version", "content_hash", "meters", "plans", "packs", "top_up_kinds")
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    METERS_FIELD_NUMBER: _ClassVar[int]
    PLANS_FIELD_NUMBER: _ClassVar[int]
    PACKS_FIELD_NUMBER: _ClassVar[int]
    TOP_UP_KINDS_FIELD_NUMBER: _ClassVar[int]
    product: str
    title: str
    version: int
    content_hash: str
    meters: _containers.RepeatedCompositeFieldContainer[CatalogueMeter]
    plans: _containers.RepeatedCompositeFieldContainer[CataloguePlan]
    packs: _containers.RepeatedCompositeFieldContainer[CataloguePack]
    top_up_kinds: _containers.RepeatedCompositeFieldContainer[CatalogueTopUpKind]
    def __init__(self, product: _Optional[str] = ..., title: _Optional[str] = ..., version: _Optional[int] = ..., content_hash: _Optional[str] = ..., meters: _Optional[_Iterable[_Union[CatalogueMeter, _Mapping]]] = ..., plans: _Optional[_Iterable[_Union[CataloguePlan, _Mapping]]] = ..., packs: _Optional[_Iterable[_Union[CataloguePack, _Mapping]]] = ..., top_up_kinds: _Optional[_Iterable[_Union[CatalogueTopUpKind, _Mapping]]] = ...) -> None: ...

class CatalogueMeter(_message.Message):
    __slots__ = ("name", "kind", "unit", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    unit: str
    description: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., unit: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class CataloguePlan(_message.Message):
    __slots__ = ("plan", "title", "kind", "intervals", "grants", "one_time_grants", "capacity", "features", "trial")
    class CapacityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PLAN_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    INTERVALS_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    ONE_TIME_GRANTS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    plan: str
    title: str
    kind: str
    intervals: _containers.RepeatedScalarFieldContainer[str]
    grants: _containers.RepeatedCompositeFieldContainer[CataloguePlanGrant]
    one_time_grants: _containers.RepeatedCompositeFieldContainer[CataloguePlanGrant]
    capacity: _containers.ScalarMap[str, int]
    features: _containers.ScalarMap[str, str]
    trial: CatalogueTrial
    def __init__(self, plan: _Optional[str] = ..., title: _Optional[str] = ..., kind: _Optional[str] = ..., intervals: _Optional[_Iterable[str]] = ..., grants: _Optional[_Iterable[_Union[CataloguePlanGrant, _Mapping]]] = ..., one_time_grants: _Optional[_Iterable[_Union[CataloguePlanGrant, _Mapping]]] = ..., capacity: _Optional[_Mapping[str, int]] = ..., features: _Optional[_Mapping[str, str]] = ..., trial: _Optional[_Union[CatalogueTrial, _Mapping]] = ...) -> None: ...

class CataloguePlanGrant(_message.Message):
    __slots__ = ("id", "bucket", "amount", "at_cycle_end", "label")
    class AmountEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    AT_CYCLE_END_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    id: str
    bucket: str
    amount: _containers.ScalarMap[str, int]
    at_cycle_end: str
    label: str
    def __init__(self, id: _Optional[str] = ..., bucket: _Optional[str] = ..., amount: _Optional[_Mapping[str, int]] = ..., at_cycle_end: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class CatalogueTrial(_message.Message):
    __slots__ = ("meter", "total", "duration_days")
    METER_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    DURATION_DAYS_FIELD_NUMBER: _ClassVar[int]
    meter: str
    total: int
    duration_days: int
    def __init__(self, meter: _Optional[str] = ..., total: _Optional[int] = ..., duration_days: _Optional[int] = ...) -> None: ...

class CataloguePack(_message.Message):
    __slots__ = ("pack", "title", "meter", "amount", "price_minor", "currency", "recurrence", "plans", "self_service")
    class AmountEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class PriceMinorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    PACK_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PRICE_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    RECURRENCE_FIELD_NUMBER: _ClassVar[int]
    PLANS_FIELD_NUMBER: _ClassVar[int]
    SELF_SERVICE_FIELD_NUMBER: _ClassVar[int]
    pack: str
    title: str
    meter: str
    amount: _containers.ScalarMap[str, int]
    price_minor: _containers.ScalarMap[str, int]
    currency: str
    recurrence: str
    plans: _containers.RepeatedScalarFieldContainer[str]
    self_service: bool
    def __init__(self, pack: _Optional[str] = ..., title: _Optional[str] = ..., meter: _Optional[str] = ..., amount: _Optional[_Mapping[str, int]] = ..., price_minor: _Optional[_Mapping[str, int]] = ..., currency: _Optional[str] = ..., recurrence: _Optional[str] = ..., plans: _Optional[_Iterable[str]] = ..., self_service: _Optional[bool] = ...) -> None: ...

class CatalogueTopUpKind(_message.Message):
    __slots__ = ("kind", "currency", "min_amount_minor", "max_amount_minor", "priority", "label", "self_service")
    KIND_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    MIN_AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    MAX_AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SELF_SERVICE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    currency: str
    min_amount_minor: int
    max_amount_minor: int
    priority: int
    label: str
    self_service: bool
    def __init__(self, kind: _Optional[str] = ..., currency: _Optional[str] = ..., min_amount_minor: _Optional[int] = ..., max_amount_minor: _Optional[int] = ..., priority: _Optional[int] = ..., label: _Optional[str] = ..., self_service: _Optional[bool] = ...) -> None: ...
