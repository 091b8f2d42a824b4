"""A used code minted under a password version its user no longer has, sent again: answered as an
expired code, not taken for a stolen code's replay (no token_revoked event, not counted in
identity_authorization_code_replays_total); a code redeemed and sent again with no change between
is a replay as before. On both databases."""

import pytest
from sqlalchemy import select

from actions import OAuthActions
from identity.extensions import db
from identity.models import AuthorizationCode
from identity.services.tokens import token_hash
from races import mobile_code
from test_change_window_review import _change_password, _code_replays
from test_localapi_support import CHEAP_ARGON2
from test_sessions_devices import browser

EXPIRED = {"error": "invalid_grant", "error_description": "Invalid 'code' in request."}


@pytest.fixture
def app_config():
    return dict(CHEAP_ARGON2)


def _answer(response) -> tuple:
    return response.status_code, response.get_json()


def _consumed(app, form) -> bool:
    with app.app_context():
        consumed_at = db.session.scalar(select(AuthorizationCode.consumed_at)
                                        .where(AuthorizationCode.code_hash == token_hash(form["code"])))
        db.session.rollback()
    return consumed_at is not None


def test_a_code_minted_before_a_password_change_is_never_spent_and_sent_again_is_no_replay(app, flow_clients):
    """The change ends the code unused (on SQLite there is no window where such a code is spent:
    the change holds the one write lock), so it is refused unspent, as often as it is sent."""
    here = browser(app)
    form = mobile_code(here, "openid offline_access")
    replays_before = _code_replays(app)
    assert _change_password(here).status_code in (200, 302)
    oauth = OAuthActions(app.test_client())
    assert _answer(oauth.token("mobile-pkce", **form)) == (400, EXPIRED)
    assert _answer(oauth.token("mobile-pkce", **form)) == (400, EXPIRED)
    assert not _consumed(app, form)
    assert _code_replays(app) == replays_before


def test_a_code_redeemed_before_a_password_change_sent_after_it_is_answered_as_expired(app, flow_clients):
    """Its grant ended with the change (what a replay would revoke was revoked already): a second
    use is answered as an expired code, neither recorded as a replay nor counted. The same code
    sent again with no change between is a replay, recorded and counted, as before."""
    here = browser(app)
    oauth = OAuthActions(app.test_client())
    replayed, outdated = mobile_code(here, "openid offline_access"), mobile_code(here, "openid offline_access")
    assert oauth.token("mobile-pkce", **replayed).status_code == 200
    assert oauth.token("mobile-pkce", **outdated).status_code == 200
    recorded, counted = _code_replays(app)
    assert oauth.token("mobile-pkce", **replayed).status_code == 400
    recorded_after, counted_after = _code_replays(app)
    assert (len(recorded_after), counted_after) == (len(recorded) + 1, counted + 1)
    assert _change_password(here).status_code in (200, 302)
    assert _answer(oauth.token("mobile-pkce", **outdated)) == (400, EXPIRED)
    assert _code_replays(app) == (recorded_after, counted_after)
