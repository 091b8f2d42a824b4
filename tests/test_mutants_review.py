"""Mutation review: each test here is the first to fail when one security check is broken
(a comparison flipped, a condition dropped, a refusal removed) where no other test did."""

from sqlalchemy import select

from actions import AuthActions, OAuthActions, redirect_params
from identity.extensions import db
from identity.models import AuthorizationCode, Client

import pytest


@pytest.fixture
def oauth(client, flow_clients):
    AuthActions(client).login()
    return OAuthActions(client)


def _set_client(app, client_id, **columns):
    """Change a client's row as an older release or a hand edit may have left it."""
    with app.app_context():
        row = db.session.scalar(select(Client).where(Client.client_id == client_id))
        for name, value in columns.items():
            setattr(row, name, value)
        db.session.commit()


# --- redirect URIs ------------------------------------------------------------------------------

def test_a_redirect_uri_with_userinfo_never_matches_even_when_registered_so():
    """The userinfo refusal is not only the loopback rule's: a registered URI with userinfo (one
    stored before the registration rules refused it) matches nothing either."""
    from identity.oauth2.client import redirect_uri_matches

    assert not redirect_uri_matches(["https://evil@app.example/cb"], "https://evil@app.example/cb")
    assert not redirect_uri_matches(["http://evil@127.0.0.1/callback"], "http://evil@127.0.0.1/callback")


# --- PKCE ---------------------------------------------------------------------------------------

def test_a_public_client_needs_pkce_whatever_its_require_pkce_column_says(oauth, app):
    _set_client(app, "native", require_pkce=False)
    response = oauth.authorize(client_id="native", state="s1")
    assert response.status_code == 302
    params = redirect_params(response.headers["Location"])
    assert params.get("error") == "invalid_request" and "code" not in params
    with app.app_context():
        assert db.session.scalar(select(AuthorizationCode.id).limit(1)) is None


def test_a_code_challenge_with_a_trailing_line_feed_is_refused(oauth, app):
    """RFC 7636 section 4.2: 43 to 128 unreserved characters; Authlib's pattern ends in `$`, which
    also matches before a final line feed, so only the provider's own check refuses it."""
    response = oauth.authorize(client_id="native", state="s1", code_challenge="a" * 43 + "\n",
                               code_challenge_method="S256")
    assert response.status_code == 302
    params = redirect_params(response.headers["Location"])
    assert params.get("error") == "invalid_request" and "code" not in params
    with app.app_context():
        assert db.session.scalar(select(AuthorizationCode.id).limit(1)) is None
