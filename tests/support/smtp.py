"""A real SMTP server for the email delivery tests: aiosmtpd's Controller (its own thread and event loop)
on a free port of 127.0.0.1, keeping every message it accepts, and refusing chosen recipients with a
chosen reply ("550 5.1.1 no such user", "450 4.2.1 mailbox busy")."""

from __future__ import annotations

import contextlib
import email
import email.policy
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Mail:
    """One message the server accepted: its envelope recipients and the parsed message."""

    recipients: list[str]
    message: EmailMessage

    def body(self, subtype: str) -> str:
        """The text of the plain (``"plain"``) or HTML (``"html"``) alternative, with "\\n" line ends (SMTP
        carries "\\r\\n")."""
        part = self.message.get_body(preferencelist=(subtype,))
        assert part is not None, f"no text/{subtype} part"
        assert isinstance(part, EmailMessage)
        return str(part.get_content()).replace("\r\n", "\n")


@dataclass
class Mailbox:
    """The server's handler: RCPT refused for the addresses in `refuse` (address -> SMTP reply line),
    every accepted message kept in `mails`, in arrival order."""

    refuse: dict[str, str] = field(default_factory=dict)
    mails: list[Mail] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # addresses refused, once per RCPT
    _changed: threading.Condition = field(default_factory=threading.Condition)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        reply = self.refuse.get(address)
        if reply is not None:
            with self._changed:
                self.refused.append(address)
                self._changed.notify_all()
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._changed:
            self.mails.append(Mail(list(envelope.rcpt_tos), message))
            self._changed.notify_all()
        return "250 2.0.0 Message accepted for delivery"

    def wait_for(self, count: int, timeout_s: float = 20.0) -> list[Mail]:
        """The first `count` messages, waiting (on the handler's notifications) up to `timeout_s` for them."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while len(self.mails) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.mails)} of {count} messages arrived within {timeout_s} s"
                self._changed.wait(left)
            return list(self.mails[:count])

    def to(self, address: str) -> list[Mail]:
        with self._changed:
            return [m for m in self.mails if address in m.recipients]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def smtp_server(mailbox: Mailbox | None = None) -> Iterator[tuple[Mailbox, int]]:
    """A running SMTP server (no TLS, no login) and its port; stopped on exit."""
    mailbox = mailbox or Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), ready_timeout=10)
    controller.start()
    try:
        yield mailbox, controller.port
    finally:
        controller.stop()
