"""Review: tidy-ups of tested code that must change no answer. A code redemption that lost reads
its code's state once (store.code_state) and answers each case as before; the one case no other
test reached, a true replay, is pinned here. An app a test makes itself (a second worker, a
server's, one with other settings) starts a mail sender thread when it mails, as the `app`
fixture's does, but only the fixture's was ended with its test: each of the others polled its
queue ten times a second for the rest of the test process (a hundred of them made a test that
switches threads take minutes). Every sender a test started is now ended after it
(tests/conftest.py, mail.stop_senders)."""

import threading

from sqlalchemy import select

from actions import OAuthActions
from app import create_app
from conftest import close_connections, make_config
from identity.extensions import db
from identity.models import AuditEvent, RefreshToken
from identity.services import issued_grants
from identity.services import mail as mail_service
from races import mobile_code, other_workers

RESET = dict(name="Erin", username="erin", lifetime="30 minutes")


def test_a_code_redeemed_twice_at_once_revokes_what_the_winner_was_issued(app, seeded, client, database_uri,
                                                                         monkeypatch):
    """Two requests redeem one code: the other commits after this one read the code and before it
    spent it. The loser is the replay the code's single use is for: refused, and the winner's
    grant revoked (its refresh token, with a `token_revoked` event), as RFC 6749 section 4.1.2
    asks. Of a lost redemption's answers, the one no other test reached."""
    form = mobile_code(client, "openid offline_access")
    reading, winner = issued_grants.user_of_grant, []

    def redeemed_by_another_after_the_read(grant):
        if not winner:
            winner.append(None)  # the other's own read comes through here too
            with other_workers(database_uri) as (other,):
                winner[0] = OAuthActions(other.test_client()).token("mobile-pkce", **form)
        return reading(grant)

    monkeypatch.setattr(issued_grants, "user_of_grant", redeemed_by_another_after_the_read)
    lost = OAuthActions(app.test_client()).token("mobile-pkce", **form)
    assert winner[0].status_code == 200 and "refresh_token" in winner[0].get_json(), winner[0].get_json()
    body = lost.get_json()
    assert (lost.status_code, body.get("error"), body.get("error_description")) == (
        400, "invalid_grant", "authorization code was already used"), body
    with app.app_context():
        assert [token.revoked_at is not None for token in db.session.scalars(select(RefreshToken))] == [True]
        revoked = db.session.scalars(select(AuditEvent.detail).where(AuditEvent.event == "token_revoked")).all()
        db.session.rollback()
    assert [detail["reason"] for detail in revoked] == ["authorization_code_replayed"]


def _sender_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "identity-mail"]


def test_an_app_made_in_a_test_mails_from_its_own_sender(app, database_uri, mail):
    own = create_app(make_config(database_uri))
    with own.test_request_context("/", base_url="https://id.example.com"):
        mail_service.send_later("erin@example.com", "password_reset", link=mail_service.link("/x"), **RESET)
    assert own.extensions["identity_mail_sender"].thread in _sender_threads()
    with own.app_context():
        assert mail_service.wait_until_sent()
    assert mail.wait_for(to="erin@example.com", timeout=2)["Subject"].startswith("Reset")
    close_connections(own)


def test_no_sender_thread_outlives_the_test_that_started_it():
    """Run after the test above (in file order): its app's sender was ended with it."""
    assert _sender_threads() == []


def test_a_mail_handed_over_as_its_sender_is_stopped_is_sent(app, mail, monkeypatch):
    """A request's mails handed to its app's sender as the test's end stopped that sender went
    into a thread that had already ended: never sent, and the process's exit waited for them."""
    handing_over, let_go = threading.Event(), threading.Event()
    put = mail_service._Sender.put

    def slow_put(sender, outgoing):
        handing_over.set()
        assert let_go.wait(10)
        put(sender, outgoing)

    def a_request_that_mails():
        with app.test_request_context("/", base_url="https://id.example.com"):
            mail_service.send_later("erin@example.com", "password_reset", link=mail_service.link("/x"), **RESET)

    monkeypatch.setattr(mail_service._Sender, "put", slow_put)
    request = threading.Thread(target=a_request_that_mails)
    request.start()
    assert handing_over.wait(10)
    sender = app.extensions["identity_mail_sender"]
    stopping = threading.Thread(target=mail_service.stop_senders)
    stopping.start()
    stopping.join(1)  # the old code stopped the sender here, before the mail was in its queue
    let_go.set()
    request.join(10)
    stopping.join(10)
    assert not sender.thread.is_alive()
    assert sender.unfinished == 0
    assert mail.wait_for(to="erin@example.com", timeout=5)["Subject"].startswith("Reset")
