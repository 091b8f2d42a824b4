"""One-time account tokens: only a hash is stored; single use (a conditional UPDATE); expired,
altered, used and superseded tokens are refused with their reason; a password change ends
pending reset links; the purge removes old rows."""

import hashlib
import threading

import pytest
from sqlalchemy import select

from identity.extensions import db
from identity.models import AccountToken, User
from identity.services import account_tokens as tokens
from identity.services import accounts
from identity.services.purge import purge
from conftest import ALICE_PASSWORD

RESET = tokens.PASSWORD_RESET


@pytest.fixture
def alice(app, seeded):
    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.remove()
    return user_id


def _issue(app, user_id, purpose=RESET, lifetime=600, **kwargs):
    with app.app_context():
        token = tokens.issue(user_id, purpose, lifetime, **kwargs)
        db.session.commit()
        db.session.remove()
    return token


def _check(app, token, purpose=RESET):
    with app.app_context():
        checked = tokens.check(token, purpose)
        db.session.remove()
    return checked


def _use(app, token, purpose=RESET) -> bool:
    with app.app_context():
        checked = tokens.check(token, purpose)
        used = checked.row is not None and tokens.consume(checked.row)
        db.session.commit()
        db.session.remove()
    return used


def test_a_token_is_256_bits_and_only_its_sha256_is_stored(app, alice):
    token = _issue(app, alice, email="alice@example.com")
    assert len(token) == 43  # 32 bytes, url-safe base64 without padding
    with app.app_context():
        [row] = db.session.scalars(select(AccountToken))
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in (row.token_hash, row.email)
        assert (row.purpose, row.user_id, row.email, row.used_at) == (RESET, alice, "alice@example.com", None)
        assert row.expires_at - row.created_at == 600


def test_a_token_works_once(app, alice):
    token = _issue(app, alice)
    assert _check(app, token).row is not None
    assert _use(app, token) is True
    assert _use(app, token) is False
    assert _check(app, token).reason == "used"


def test_of_two_simultaneous_uses_exactly_one_wins(app, alice):
    token = _issue(app, alice)
    with app.app_context():
        row = tokens.check(token, RESET).row
        db.session.remove()
    results, barrier = [], threading.Barrier(2)

    def use():
        with app.app_context():
            barrier.wait()
            won = tokens.consume(row)
            db.session.commit()
            db.session.remove()
            results.append(won)

    threads = [threading.Thread(target=use) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [False, True]


@pytest.mark.parametrize("presented", ["", "x" * 43, "x" * 5000, None])
def test_an_unknown_or_malformed_token_is_refused(app, alice, presented):
    _issue(app, alice)
    assert _check(app, presented).reason == "unknown"


def test_a_tampered_token_is_refused(app, alice):
    token = _issue(app, alice)
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert _check(app, tampered).reason == "unknown"
    assert _use(app, tampered) is False
    assert _use(app, token) is True  # the real one still works


def test_a_token_of_another_purpose_is_refused(app, alice):
    token = _issue(app, alice, purpose=tokens.VERIFY_EMAIL)
    assert _check(app, token, RESET).reason == "unknown"
    assert _check(app, token, tokens.VERIFY_EMAIL).row is not None


def test_an_expired_token_is_refused(app, alice, monkeypatch):
    token = _issue(app, alice, lifetime=60)
    import identity.services.account_tokens as module

    later = module.now() + 61
    monkeypatch.setattr(module, "now", lambda: later)
    assert _check(app, token).reason == "expired"
    assert _use(app, token) is False


def test_a_newer_token_supersedes_the_older_ones_of_the_same_purpose_only(app, alice):
    first = _issue(app, alice)
    verify = _issue(app, alice, purpose=tokens.VERIFY_EMAIL)
    second = _issue(app, alice)
    assert _check(app, first).reason == "used"
    assert _check(app, second).row is not None
    assert _check(app, verify, tokens.VERIFY_EMAIL).row is not None


def test_a_password_change_ends_pending_reset_links(app, alice):
    token = _issue(app, alice)
    verify = _issue(app, alice, purpose=tokens.VERIFY_EMAIL)
    with app.app_context():
        accounts.change_password(alice, ALICE_PASSWORD, "copper-lantern-meadow-2291", "copper-lantern-meadow-2291")
        db.session.remove()
    assert _check(app, token).reason == "used"
    assert _check(app, verify, tokens.VERIFY_EMAIL).row is not None  # not a reset link


def test_the_hourly_count_sees_every_token_made_since(app, alice):
    for _ in range(3):
        _issue(app, alice)
    with app.app_context():
        assert tokens.issued_since(alice, RESET, 0) == 3
        assert tokens.issued_since(alice, tokens.VERIFY_EMAIL, 0) == 0
        assert tokens.issued_since(alice, RESET, tokens.now() + 1) == 0


def test_the_purge_removes_tokens_an_hour_after_they_expire(app, alice):
    _issue(app, alice)
    with app.app_context():
        db.session.add(AccountToken(token_hash="0" * 64, purpose=RESET, user_id=alice, created_at=1, expires_at=2))
        db.session.commit()
        assert purge()["account_tokens"] == 1
        assert db.session.scalar(select(AccountToken.token_hash).where(AccountToken.token_hash == "0" * 64)) is None
        assert len(list(db.session.scalars(select(AccountToken)))) == 1
