"""The SMTP side of mail: Flask-Mail's message and its connection, with a timeout.

identity/services/mail.py imports this on its first message, so a worker that never mails
(most of them, most of the time) loads neither Flask-Mail nor smtplib: 0.8 MiB of its memory.
Flask-Mail's settings are read on that first use, from the app's config.
"""

import smtplib
import ssl
from email.charset import QP, Charset
from email.headerregistry import Address
from email.mime.text import MIMEText
from email.utils import parseaddr

from flask import Flask, current_app
from flask_mail import Connection, Mail, Message

__all__ = ["Message", "SMTPException", "message", "send", "settings"]

SMTPException = smtplib.SMTPException


class _TimedConnection(Connection):
    """Flask-Mail's connection, with a timeout (MAIL_TIMEOUT_SECONDS): Flask-Mail opens its SMTP
    socket without one, so a server that accepts and then hangs would hold the sender forever.

    TLS (MAIL_USE_SSL, MAIL_USE_TLS) checks the server's certificate and host name against the
    system's CAs (SSL_CERT_FILE names another CA file, for a private CA): smtplib without a context checks
    neither, so anyone on the path could answer with a certificate of their own and read the
    password-reset links and the login."""

    def configure_host(self):
        state, timeout = self.mail, current_app.config["MAIL_TIMEOUT_SECONDS"]
        if state.use_ssl:
            host = smtplib.SMTP_SSL(state.server, state.port, timeout=timeout, context=ssl.create_default_context())
        else:
            host = smtplib.SMTP(state.server, state.port, timeout=timeout)
        if state.use_tls:
            host.starttls(context=ssl.create_default_context())
        if state.username and state.password:
            host.login(state.username, state.password)
        return host


class _Mail(Mail):
    def connect(self) -> Connection:
        return _TimedConnection(settings(current_app))


#: RFC 5322's longest line, in bytes without its CRLF
MAX_LINE = 998


class _Message(Message):
    """Flask-Mail's message, a part with a line too long for mail quoted-printable. Flask-Mail
    sends UTF-8 as it is (7bit or 8bit), so a line is as long as the template's: a reset link that
    keeps a long authorization request (returnUrl) was one line of over 998 characters, which
    RFC 5322 forbids and SMTP servers refuse ("Line too long"), so the mail never left.
    Quoted-printable breaks its lines at 76 characters, and the mail program joins them again;
    other parts stay as they are, so a development outbox file read as text shows its link whole."""

    def _mimetext(self, text, subtype="plain"):
        if not any(len(line.encode()) > MAX_LINE for line in (text or "").splitlines()):
            return super()._mimetext(text, subtype)
        charset = Charset(self.charset or "utf-8")
        charset.body_encoding = QP
        return MIMEText(text, _subtype=subtype, _charset=charset)

    def _message(self):
        """The From header set by the message's own policy (SMTP). Flask-Mail's encodes the
        sender's name in words of 76 characters, split inside a word, which the policy then
        folded with a space in it: "Musterhausen" arrived as "Musterhause n"."""
        message = super()._message()
        name, address = parseaddr(self.sender)
        if not address.isascii():  # an international domain: Flask-Mail's header has its IDNA form
            return message
        del message["From"]
        message["From"] = Address(display_name=name, addr_spec=address)
        return message


_mail = _Mail()


def settings(app: Flask):
    """Flask-Mail's state for this app (server, port, TLS, ...), read from its config on first use."""
    state = app.extensions.get("mail")
    if state is None:
        state = _mail.init_app(app)
    return state


def message(**fields) -> Message:
    """A Flask-Mail message (subject, recipients, body, html, sender). Flask-Mail reads its
    settings while it builds and sends one, so they are read here first."""
    settings(current_app)
    return _Message(**fields)


def send(outgoing: Message) -> None:
    """Send one message by SMTP now; raises SMTPException or OSError when it does not leave."""
    _mail.send(outgoing)
