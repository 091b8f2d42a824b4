"""The mails as their recipient, and an attacker who chooses some of their inputs, sees them: the
mailbox a link goes to, the headers, the expiry a mail states."""

import asyncio

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import event, select

from bench.server import free_port
from conftest import ALICE_PASSWORD, postgresql_only
from identity.extensions import db
from identity.models import AuditEvent, User
from identity.services import mail as outgoing
from mail_server import Inbox
from mfa_actions import step_clock  # noqa: F401  (the fixture: enrol_user's codes are for its clock)
from test_email_change import api, change_email  # noqa: F401  (the fixture)
from test_registration import ON, register, users


# Python's IDNA codec (what the mail library applies to a non-ASCII domain) maps these to
# "example.com": a soft hyphen, a zero-width space, a variation selector, full-width letters
MAPPED_DOMAINS = ["ex\u00adample.com", "ex\u200bample.com", "exam\ufe0fple.com",
                  "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"]


@pytest.mark.parametrize("app_config", [ON])
@pytest.mark.parametrize("domain", MAPPED_DOMAINS)
def test_a_domain_the_mail_library_rewrites_is_refused_at_registration(app, client, seeded, mail, domain):
    """"bob@ex\\u00adample.com" is not bob's address to the server (so not "taken"), yet its link
    was mailed to bob@example.com: a second account on bob's mailbox, its address called verified
    once he opens a link that names the other account."""
    response = register(client, email=f"bob@{domain}")
    assert response.status_code == 400
    assert "would go to another domain" in response.get_data(as_text=True)
    assert "carol" not in users(app)
    with app.app_context():
        assert outgoing.wait_until_sent()
    assert mail.messages == []


@pytest.mark.parametrize("domain", MAPPED_DOMAINS[:1])
def test_a_domain_the_mail_library_rewrites_is_refused_as_a_new_address(app, api, mail, domain):
    response = change_email(api, email=f"bob@{domain}")
    assert response.status_code == 400
    with app.app_context():
        assert outgoing.wait_until_sent()
        assert db.session.scalar(select(User.pending_email).where(User.username == "alice")) is None
    assert mail.to("bob@example.com") == []


@pytest.mark.parametrize("app_config", [ON])
def test_a_domain_with_no_idna_form_is_refused(app, client, seeded, mail):
    """A label too long once encoded: no mail can ever reach it (the mail library fails on it)."""
    response = register(client, email="carol@" + "\u00e9" * 60 + ".example")
    assert response.status_code == 400
    assert "carol" not in users(app)


@pytest.mark.parametrize("app_config", [ON])
def test_an_international_domain_is_still_taken(app, client, seeded, mail):
    response = register(client, email="carol@b\u00fccher.example")
    assert response.status_code == 200
    message = mail.wait_for(to="carol@xn--bcher-kva.example")
    assert "verify-email" in mail.text(message)


RESET = dict(name="Alice", username="alice", lifetime="30 minutes", link="https://id.example.com/x")


@pytest.mark.parametrize("product", ["Example, Inc. ID", "Acme: Sign-in", "Soci\u00e9t\u00e9 (beta) ID"])
def test_the_product_name_is_the_sender_s_display_name_whatever_its_punctuation(app, mail, product):
    """With no MAIL_DEFAULT_SENDER the From is PRODUCT_NAME <no-reply@issuer's host>; a comma made
    it two addresses ("Example" and " Inc. ID <...>"), of which the mail library kept the first:
    From and the envelope sender were "Example", no domain."""
    app.config["PRODUCT_NAME"] = product
    with app.test_request_context("/", base_url="https://id.example.com"):
        assert outgoing.send("alice@example.com", "password_reset", **RESET) is True
    message = mail.wait_for(to="alice@example.com")
    sender = message["From"].addresses
    assert [(a.display_name, a.addr_spec) for a in sender] == [(product, "no-reply@id.example.com")]
    assert message["Subject"] == f"Reset your {product} password"


@pytest.mark.parametrize("app_config, stated", [
    ({"EMAIL_VERIFICATION_SECONDS": 1800}, "within 30 minutes"),  # said "within 1 hours"
    ({"EMAIL_VERIFICATION_SECONDS": 5400}, "within 90 minutes"),  # said "within 1 hours"
    ({"EMAIL_VERIFICATION_SECONDS": 3600}, "(within 1 hour)"),
    ({"EMAIL_VERIFICATION_SECONDS": 86400}, "within 24 hours"),
])
def test_a_verification_mail_states_how_long_its_link_works(app, api, mail, stated):  # noqa: F811
    """A link that expires in half an hour must not promise an hour."""
    assert api.client.post("/localapi/email/verification", headers={"Authorization": f"Bearer {api.token()}"}
                           ).status_code == 202
    message = mail.wait_for(to="alice@example.com")
    assert stated in " ".join(mail.text(message).split())
    assert stated in " ".join(mail.html(message).split())


@pytest.mark.parametrize("app_config, stated", [
    ({"PASSWORD_RESET_SECONDS": 30}, "within 30 seconds"),  # said "within 0 minutes"
    ({"PASSWORD_RESET_SECONDS": 90}, "within 90 seconds"),  # said "within 1 minutes"
    ({"PASSWORD_RESET_SECONDS": 1800}, "within 30 minutes"),
])
def test_a_reset_mail_states_how_long_its_link_works(app, client, seeded, mail, stated):
    from test_recovery import ask, sent
    assert ask(client).status_code == 200
    sent(app)
    message = mail.wait_for(to="alice@example.com")
    assert stated in " ".join(mail.text(message).split())
    assert stated in " ".join(mail.html(message).split())


@pytest.mark.parametrize("app_config, domain", [
    ({}, "id.example.com"),  # the issuer's host, as the sender's
    ({"MAIL_DEFAULT_SENDER": "Example <id@mail.example.org>"}, "mail.example.org"),
    # an international domain in its IDNA form: as written, no mail could be written (UnicodeEncodeError)
    ({"ISSUER": "https://id.b\u00fccher.example"}, "id.xn--bcher-kva.example"),
    ({"MAIL_DEFAULT_SENDER": "Example <id@mail.b\u00fccher.example>"}, "mail.xn--bcher-kva.example"),
])
def test_the_message_id_names_the_sender_s_domain_not_the_machine(app, mail, domain):
    """Python's make_msgid() put the machine's own name (socket.getfqdn(), an internal host name),
    the worker's process id and the time in every mail, to any address anyone can have mailed."""
    import os
    import socket
    with app.test_request_context("/", base_url="https://id.example.com"):
        assert outgoing.send("alice@example.com", "password_reset", **RESET) is True
    message_id = mail.wait_for(to="alice@example.com")["Message-ID"]
    assert message_id.startswith("<") and message_id.endswith(f"@{domain}>")
    assert socket.getfqdn() not in message_id.replace(domain, "")
    assert f".{os.getpid()}." not in message_id


def test_a_reset_link_longer_than_a_mail_line_still_arrives_whole(app, client, seeded, mail):
    """A forgot-password asked for from a sign-in page keeps the pending request (returnUrl) in its
    link: an authorization request with a long state made the link one line of over 998
    characters, which RFC 5322 forbids and the SMTP server refused ("Line too long"): the person
    was told to check their mail, and no mail ever came (mail_failed: SMTPDataError)."""
    from urllib.parse import parse_qs, urlencode, urlsplit
    from test_recovery import ask, sent
    return_url = "/connect/authorize?" + urlencode({
        "client_id": "spa", "response_type": "code", "redirect_uri": "https://spa.example.com/callback",
        "scope": "openid profile email", "state": "s" * 700, "nonce": "n" * 43, "code_challenge": "c" * 43,
        "code_challenge_method": "S256"})
    assert ask(client, return_url=return_url).status_code == 200
    sent(app)
    message = mail.wait_for(to="alice@example.com", timeout=3)
    assert max(len(line) for line in message.as_bytes().split(b"\n")) <= 998
    link = mail.link(message)
    assert parse_qs(urlsplit(link).query)["returnUrl"] == [return_url]
    assert f'href="{link.replace("&", "&amp;")}"' in mail.html(message)
    page = client.get(urlsplit(link).path + "?" + urlsplit(link).query)
    assert page.status_code == 200


def test_an_ordinary_mail_s_link_is_whole_in_its_raw_text(app, mail):
    """docs/recovery.md: an outbox file can be read as text, the link in its plain-text part."""
    link = "https://id.example.com/account/reset-password?token=" + "t" * 43
    with app.test_request_context("/", base_url="https://id.example.com"):
        assert outgoing.send("alice@example.com", "password_reset", **{**RESET, "link": link}) is True
    assert link.encode() in mail.wait_for(to="alice@example.com").as_bytes()


def test_a_long_sender_name_with_accents_arrives_as_written(app, mail):
    """Flask-Mail encodes the name in words of 76 characters, split inside a word, and the message's
    policy then folded it with a space in that word: "Musterhause n-am-See"."""
    product = "Portcullis Identit\u00e4t f\u00fcr die Stadtverwaltung Musterhausen-am-See und Umgebung"
    app.config["PRODUCT_NAME"] = product
    with app.test_request_context("/", base_url="https://id.example.com"):
        assert outgoing.send("alice@example.com", "password_reset", **RESET) is True
    message = mail.wait_for(to="alice@example.com")
    assert [(a.display_name, a.addr_spec) for a in message["From"].addresses] == [(product, "no-reply@id.example.com")]
    assert message["Subject"] == f"Reset your {product} password"


def test_a_link_to_an_address_not_yet_proved_carries_no_free_text_of_the_requester(app, api, mail):  # noqa: F811
    """The verification mail went to any address a signed-in user named, greeting it with their
    display name: up to 200 characters of the requester's own text (a URL, an offer) in a mail
    from this server to anyone. It now greets no one by name; the account is named by its user
    name, which has no spaces."""
    pitch = "Claim your prize at prize.example now"
    with app.app_context():
        db.session.scalar(select(User).where(User.username == "alice")).name = pitch
        db.session.commit()
    assert change_email(api, email="stranger@example.org").status_code == 202
    message = mail.wait_for(to="stranger@example.org")
    assert pitch not in mail.text(message) and pitch not in mail.html(message)
    assert "alice" in mail.text(message)


class _SlowInbox(Inbox):
    """An inbox whose server takes `delay` seconds to accept each message (a slow relay)."""

    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.postgres
@postgresql_only()[1]
def test_a_commands_mail_to_a_slow_relay_holds_no_transaction_open(app, runner, seeded, step_clock):
    """`users mfa-reset` tells the user by mail once the reset has committed. Reading the user's
    address for it began a new transaction, which stayed open, idle, for the whole SMTP round
    trip: with PostgreSQL's idle_in_transaction_session_timeout shorter than the relay takes, the
    server ended the connection, and the audit of the mail sent (`mail_sent`) was lost, with a
    traceback in the log. The relay here takes a second; idle transactions end after 300 ms."""
    from mfa_actions import enrol_user

    inbox = _SlowInbox(delay=1.0)
    relay = Controller(inbox, hostname="127.0.0.1", port=free_port())
    relay.start()
    app.config["MAIL_PORT"] = relay.port  # before the app's first mail: the settings are read then
    enrol_user(app)
    inbox.clear()  # the notice of the app set up
    with app.app_context():
        engine = db.engine

    def idle_transactions_end_soon(connection, _record):
        connection.autocommit = True  # a SET in a transaction rolled back would be undone
        connection.execute("SET idle_in_transaction_session_timeout = 300")
        connection.autocommit = False

    event.listen(engine, "connect", idle_transactions_end_soon)
    engine.dispose()  # the pool's connections are opened again, with the setting
    try:
        result = runner.invoke(args=["users", "mfa-reset", "alice"])
    finally:
        event.remove(engine, "connect", idle_transactions_end_soon)
        engine.dispose()
        relay.stop()
    assert result.exit_code == 0, result.output
    assert [message["Subject"] is not None for message in inbox.messages] == [True]
    with app.app_context():
        sent = list(db.session.scalars(select(AuditEvent.detail).where(AuditEvent.event == "mail_sent")
                                       .order_by(AuditEvent.id)))
    assert [detail["template"] for detail in sent] == ["sign_in_method_changed", "second_factors_removed"]
