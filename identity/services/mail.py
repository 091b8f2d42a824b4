"""Mail: a message rendered from templates/mail/ and sent by SMTP (Flask-Mail), or written to
instance/outbox/ in development when no MAIL_SERVER is set.

`send` delivers now; `send_later` renders now (links need the request's issuer) and, once the
request is torn down, hands the message to this process's sender thread, so a response never
waits for, or reveals, the SMTP round trip: the forgot-password answer must take as long for an unknown account as for a known
one. Either way a failure is logged (the template and the error's class, never the message),
recorded in the audit log as `mail_failed`, and reported as False; it never raises, so the
action that wanted the mail is kept and the person is answered the same way.
"""

import collections
import email.utils
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from flask import Flask, current_app, g, has_request_context, render_template

from ..current import context_globals, current_application
from ..extensions import db
from ..config.issuer import issuer
from ..store.writes import write
from . import audit
from .login_names import ascii_domain

if TYPE_CHECKING:
    from flask_mail import Message

log = logging.getLogger("identity.mail")

OUTBOX = "outbox"  # under the instance folder


PENDING_KEY = "identity_mail_pending"
SEND_POLL_SECONDS = 0.1  # how often the sender thread looks for queued mail (see _Sender)


def init_app(app: Flask) -> None:
    """Send this app's mails at the end of their requests. Flask-Mail itself, and its reading of
    the MAIL_* settings, wait for the first message (mail_transport.py); calling this again after
    the settings changed has them read again."""
    app.extensions.pop("mail", None)
    if _release_pending not in app.teardown_request_funcs.get(None, []):
        app.teardown_request(_release_pending)


class NoMailServer(Exception):
    """Production without MAIL_SERVER (a command: the server refuses to start without it)."""


def outbox_path(app: Flask) -> str | None:
    """Where mails are written instead of sent (development without MAIL_SERVER), or None when
    they are sent. In production a mail with no MAIL_SERVER is not sent, and audited as failed:
    a file on the machine that ran a command would tell nobody, and the audit log would say it did."""
    if app.config.get("MAIL_SERVER"):
        return None
    from ..config.startup import is_development

    if not is_development(app):
        raise NoMailServer()
    return os.path.join(app.instance_path, OUTBOX)


def base_url() -> str | None:
    """The issuer that links in mails start with (None outside a request without FLASK_ISSUER)."""
    if current_app.config.get("ISSUER") or has_request_context():
        return issuer()
    return None


def link(path: str, **query: str) -> str:
    """An absolute URL under the issuer: `link("/account/reset-password", token=...)`."""
    return (base_url() or "") + path + ("?" + urlencode(query) if query else "")


def lifetime_text(seconds: int) -> str:
    """How long a link works, as a mail says it, never longer than it does: whole hours ("1 hour",
    "24 hours"), else minutes ("30 minutes", "90 minutes"), else seconds ("90 seconds")."""
    seconds = int(seconds)
    if seconds % 3600 == 0:
        count, unit = seconds // 3600, "hour"
    elif seconds >= 120:
        count, unit = seconds // 60, "minute"
    else:
        count, unit = seconds, "second"
    return f"{count} {unit}{'' if count == 1 else 's'}"


def _sender() -> str:
    """MAIL_DEFAULT_SENDER, else PRODUCT_NAME <no-reply@issuer's host>. The name is quoted: the
    mail library parses the sender again, and read a comma in it as the end of an address
    ("Example, Inc." was sent from "Example"), a colon as a group's name, parentheses as a comment."""
    configured = current_app.config.get("MAIL_DEFAULT_SENDER")
    if configured:
        return configured
    host = urlsplit(base_url() or "").hostname or "localhost"
    return f'"{email.utils.quote(current_app.config["PRODUCT_NAME"])}" <no-reply@{host}>'


@dataclass
class Outgoing:
    """A rendered message, ready to go, and what the audit log says about it."""

    message: "Message"
    template: str
    user_id: int | None


def render(to: str, template: str, *, user_id: int | None = None, **context) -> Outgoing:
    """Render templates/mail/<template>.txt and .html; the text template sets `subject`."""
    context.setdefault("product_name", current_app.config["PRODUCT_NAME"])
    context.setdefault("issuer", base_url())
    text_template = current_app.jinja_env.get_template(f"mail/{template}.txt")
    text = text_template.make_module(context)
    subject = getattr(text, "subject", None) or current_app.config["PRODUCT_NAME"]
    html = render_template(f"mail/{template}.html", subject=subject, **context)
    from . import mail_transport

    sender = _sender()
    message = mail_transport.message(subject=subject, recipients=[to], body=str(text), html=html, sender=sender)
    message.msgId = _message_id(sender)
    return Outgoing(message, template, user_id)


def _message_id(sender: str) -> str:
    """A Message-ID at the sender's domain. Flask-Mail's (Python's make_msgid()) named the machine
    (socket.getfqdn(): an internal host name, looked up in DNS for every mail) and carried the
    worker's process id and the time, in mails to any address anyone can have mailed. An
    international domain is written in its IDNA form, as the sender's address is: a header
    cannot carry it as written, and no mail was sent at all (UnicodeEncodeError)."""
    domain = email.utils.parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    if not domain.isascii():
        domain = ascii_domain(domain) or "localhost"
    return f"<{secrets.token_hex(16)}@{domain}>"


def deliver(outgoing: Outgoing) -> bool:
    """Send (or write to the outbox) one rendered message; audit the outcome; never raise."""
    from . import mail_transport  # loaded by render() already

    try:
        folder = outbox_path(current_app)
        if folder is None:
            mail_transport.send(outgoing.message)
        else:
            _write_to_outbox(folder, outgoing)
    except (mail_transport.SMTPException, OSError, ValueError, AssertionError, NoMailServer) as err:
        # no recipient, link or body in the log: the template and the error's kind say enough
        log.warning("mail %r for user %s not sent: %s", outgoing.template, outgoing.user_id, err.__class__.__name__)
        _audit("mail_failed", outgoing, reason=err.__class__.__name__)
        return False
    _audit("mail_sent", outgoing)
    return True


def send(to: str, template: str, *, user_id: int | None = None, **context) -> bool:
    """Render and send a mail now; True if it left (or reached the outbox). Call it after your commit.

    A transaction the session began since (reading an expired attribute for the mail, as a command
    does) is ended before the SMTP round trip, not held open and idle through it: PostgreSQL's
    idle_in_transaction_session_timeout would end the connection, and the audit of the mail with it.
    It holds no write of the caller's: those were committed, and the audit's write commits the
    session's transaction in any case (store/writes.py)."""
    try:
        outgoing = render(to, template, user_id=user_id, **context)
    except Exception as err:  # a broken template must not undo the action that wanted the mail
        log.exception("mail %r for user %s not rendered", template, user_id)
        _audit("mail_failed", Outgoing(None, template, user_id), reason=err.__class__.__name__)
        return False
    if db.session().in_transaction():
        db.session.commit()
    return deliver(outgoing)


def send_later(to: str, template: str, *, user_id: int | None = None, **context) -> None:
    """Render a mail now and, while serving a request, send it from this process's sender thread
    (the response does not wait). Outside a request (a command) it is sent now: the process may
    end as soon as the command returns."""
    if not has_request_context():
        send(to, template, user_id=user_id, **context)
        return
    try:
        outgoing = render(to, template, user_id=user_id, **context)
    except Exception as err:
        log.exception("mail %r for user %s not rendered", template, user_id)
        _audit("mail_failed", Outgoing(None, template, user_id), reason=err.__class__.__name__)
        return
    # held until the request is torn down: a sender thread that started at once would compete
    # with the rest of the response for the interpreter, and make a mailing answer measurably slower
    pending = g.setdefault(PENDING_KEY, [])
    pending.append(outgoing)


def _release_pending(_error=None) -> None:
    """At the end of a request (its page rendered, its transaction over): queue its mails."""
    pending = context_globals().pop(PENDING_KEY, None)
    if pending:
        _queue(current_application(), pending)


def wait_until_sent(timeout: float = 10.0) -> bool:
    """Wait until this process's sender thread has handled every queued mail (tests; at exit the
    sender drains itself)."""
    sender = current_app.extensions.get("identity_mail_sender")
    return True if sender is None else sender.wait(timeout)


def _audit(event: str, outgoing: Outgoing, **detail) -> None:
    try:
        write(audit.event_write(event, user_id=outgoing.user_id, detail={"template": outgoing.template, **detail}))
    except Exception:  # the database may be what failed; the log line above is then the record
        log.exception("audit of %s failed", event)


def _write_to_outbox(folder: str, outgoing: Outgoing) -> None:
    os.makedirs(folder, exist_ok=True)
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{outgoing.template}-{secrets.token_hex(4)}.eml"
    fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # it holds live links
    with os.fdopen(fd, "wb") as f:
        f.write(outgoing.message.as_bytes())


class _Sender:
    """One thread per process (started on first use, so after gunicorn forks) sending queued mail.

    The thread is never woken by the request that queues a mail: it looks at its queue every
    SEND_POLL_SECONDS on its own clock. Waking it at the end of a request would make it take the
    interpreter while that request's response is still being written, so a request that mails
    would answer measurably slower than one that does not, and a forgot-password answer would
    tell whether the account exists. A timer's wake-ups fall on any request alike.
    """

    def __init__(self, app: Flask):
        self.app = app
        self.queue: collections.deque[Outgoing] = collections.deque()
        self.unfinished = 0
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.stopping = threading.Event()  # set only by stop(): never a wake-up (see the class's docstring)
        self.thread = threading.Thread(target=self._run, name="identity-mail", daemon=True)
        self.thread.start()
        # A worker that stops (a deploy, a reload, a recycle) would end this daemon thread with
        # what its last requests queued: mails the person was told about. Its exit waits for them,
        # within two SMTP timeouts. A multiprocessing finalizer runs on both servers' exit paths:
        # gunicorn's (atexit) and granian's (os._exit after multiprocessing's own exit function).
        import multiprocessing.util  # here: a worker that never mails does not load it

        multiprocessing.util.Finalize(None, self.drain, exitpriority=10)

    def drain(self) -> None:
        """At the process's exit: wait for the queued mails; log how many were left unsent."""
        if os.getpid() != self.pid or not self.unfinished:
            return
        if not self.wait(2 * float(self.app.config["MAIL_TIMEOUT_SECONDS"]) + 1):
            log.warning("%d queued mail(s) not sent before the process exited", self.unfinished)

    def put(self, outgoing: Outgoing) -> None:
        with self.lock:
            self.unfinished += 1
        self.queue.append(outgoing)  # no wake-up: the thread polls (see the class's docstring)

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.unfinished:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        """End the thread once the queue is empty (after what it is sending now)."""
        self.stopping.set()
        self.thread.join(2 * float(self.app.config["MAIL_TIMEOUT_SECONDS"]) + 1)

    def _run(self) -> None:
        while not self.stopping.wait(SEND_POLL_SECONDS) or self.queue:
            while self.queue:
                outgoing = self.queue.popleft()
                try:
                    with self.app.app_context():
                        try:
                            deliver(outgoing)
                        finally:
                            db.session.remove()
                except Exception:
                    log.exception("mail %r not handled", outgoing.template)
                finally:
                    with self.lock:
                        self.unfinished -= 1


_sender_lock = threading.Lock()
_senders: set[_Sender] = set()  # this process's running ones, for stop_senders


def stop_sender(app: Flask) -> None:
    """End this app's sender thread, if it has one, once its queue is sent: for an app that is done
    with while its process goes on (each test's). A server's app never is: its thread lives and
    drains with the process."""
    with _sender_lock:
        sender = app.extensions.pop("identity_mail_sender", None)
        _senders.discard(sender)
    if sender is not None and sender.pid == os.getpid():
        sender.stop()


def stop_senders() -> None:
    """stop_sender for every app whose sender this process started: for a process that makes
    apps and is done with them while it goes on (a test run, after each test, whoever made the
    app)."""
    with _sender_lock:
        apps = [sender.app for sender in _senders]
    for app in apps:
        stop_sender(app)


def _queue(app: Flask, outgoing: list[Outgoing]) -> None:
    """Hand mails to the app's sender, started if it has none (or its thread ended), under the
    lock stop_sender takes: a sender it stops has nothing put into it after its queue was sent."""
    with _sender_lock:
        sender = app.extensions.get("identity_mail_sender")
        if sender is None or sender.pid != os.getpid() or not sender.thread.is_alive():
            _senders.discard(sender)
            sender = app.extensions["identity_mail_sender"] = _Sender(app)
            _senders.add(sender)
        for mail in outgoing:
            sender.put(mail)
