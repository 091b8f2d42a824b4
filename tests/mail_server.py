"""A real SMTP server for the tests: aiosmtpd on 127.0.0.1 at a free port, one per test process.

Every app the tests build (conftest.make_config) and every server process they start
(servers.server_env) sends its mail here, so no test writes to instance/outbox/ and none mocks
the mailer. The `mail` fixture empties the inbox before its test and hands it over:

    def test_x(client, mail):
        ...
        message = mail.wait_for(to="alice@example.com")
        url = mail.link(message)
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
import socket
import threading
import time
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

from bench.server import free_port

HOST = "127.0.0.1"
# aiosmtpd logs each session, message data included, at DEBUG: the test server's chatter, not the
# product's; tests that look for secrets in every log record would find the mailed link there
logging.getLogger("mail.log").setLevel(logging.WARNING)
URL_RE = re.compile(r"https?://[^\s<>\"']+")


class Inbox:
    """What the server received, as parsed messages (`email.message.EmailMessage`), oldest first."""

    def __init__(self):
        self._messages: list[EmailMessage] = []
        self._changed = threading.Condition()

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's handler hook
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[EmailMessage]:
        with self._changed:
            return list(self._messages)

    def clear(self) -> None:
        with self._changed:
            self._messages.clear()

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address.lower() in m["X-Envelope-To"].lower()]

    def wait_for(self, *, to: str | None = None, count: int = 1, timeout: float = 10.0) -> EmailMessage:
        """The newest message (to `to`) once at least `count` have arrived; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [m for m in self._messages if to is None or to.lower() in m["X-Envelope-To"].lower()]
                if len(found) >= count:
                    return found[-1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no mail{' to ' + to if to else ''} within {timeout} s "
                                         f"(received: {[m['Subject'] for m in self._messages]})")
                self._changed.wait(left)

    @staticmethod
    def text(message: EmailMessage) -> str:
        return message.get_body(preferencelist=("plain",)).get_content()

    @staticmethod
    def html(message: EmailMessage) -> str:
        return message.get_body(preferencelist=("html",)).get_content()

    def links(self, message: EmailMessage) -> list[str]:
        return URL_RE.findall(self.text(message))

    def link(self, message: EmailMessage) -> str:
        """The one link of a message (fails if it has none or several)."""
        found = self.links(message)
        assert len(found) == 1, found
        return found[0]


class MailServer:
    def __init__(self):
        self.inbox = Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname=HOST, port=self.port)

    def start(self) -> "MailServer":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


_server: MailServer | None = None
_lock = threading.Lock()


#: sockets bound and never listened on, held for the whole run (`refusing_port`)
_HELD: list[socket.socket] = []


def refusing_port() -> int:
    """A loopback port where a connection is refused for the rest of the run: bound here and never
    listened on, so no other server can take it (free_port()'s port, given back at once, was taken
    by another test's SMTP server in CI, and the mail a test expected to fail was sent)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    _HELD.append(sock)
    return sock.getsockname()[1]


def shared_server() -> MailServer:
    """This process's SMTP server (started on first use, stopped when the process ends)."""
    global _server
    with _lock:
        if _server is None:
            _server = MailServer().start()
        return _server


def settings() -> dict:
    """The mail settings that point an app at the shared server."""
    server = shared_server()
    return {"MAIL_SERVER": HOST, "MAIL_PORT": server.port}


def environment() -> dict[str, str]:
    """The same, as FLASK_* variables for a server process."""
    return {f"FLASK_{name}": str(value) for name, value in settings().items()}


@pytest.fixture
def mail() -> Inbox:
    """The shared SMTP server's inbox, emptied for this test."""
    inbox = shared_server().inbox
    inbox.clear()
    yield inbox
