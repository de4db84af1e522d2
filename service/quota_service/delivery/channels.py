"""What the dispatcher hands a delivery channel (webhook, email) and what a channel answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from quota_service.domain.events import Event

EXCERPT_BYTES = 1024  # the most of an answer's body kept with an attempt

__all__ = ["EXCERPT_BYTES", "AttemptResult", "Channel", "DeliveryTarget", "Event"]


@dataclass(frozen=True)
class DeliveryTarget:
    """Where one delivery goes: a webhook endpoint (url and signing secrets) or an email recipient."""

    delivery_id: int
    channel: str  # "webhook" | "email"
    attempt: int  # 1 for the first attempt of this delivery
    endpoint_id: str = ""
    url: str = ""
    # the signing secrets: the endpoint's current one, then the previous one while its rotation grace lasts
    secrets: tuple[str, ...] = ()
    recipient: str = ""  # an email address


@dataclass(frozen=True)
class AttemptResult:
    """One attempt's outcome. `delivered`: the target accepted it (HTTP 2xx, the mail server took it);
    `gone`: the target said it will never accept (HTTP 410: the endpoint is disabled). Anything else
    is retried."""

    delivered: bool
    status_code: int = 0  # the HTTP status, or the SMTP reply code (0: no answer)
    latency_ms: int = 0
    response: str = ""  # the first EXCERPT_BYTES of the answer
    error: str = ""  # why it was not delivered ("" when it was)
    gone: bool = False


class Channel(Protocol):
    async def send(self, event: Event, target: DeliveryTarget) -> AttemptResult:
        """Make one attempt; never raises for a failed attempt (the result says why). Bounded in time
        by the channel's own timeout."""
        ...

    async def close(self) -> None:
        """Release the channel's connections (the server is stopping)."""
        ...
