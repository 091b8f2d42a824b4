"""Tokens as a third-party resource server consumes them: validated locally (RFC 9068) with the
JWKS, or introspected (RFC 7662) by their client; what the two, and the grants, still disagreed
on (each test was seen failing on the code before its fix)."""

import base64

from sqlalchemy import update

from identity.extensions import db
from identity.models import User

from actions import AuthActions, OAuthActions

WEB = {"Authorization": "Basic " + base64.b64encode(b"web:web-secret-0123456789").decode()}


def web_tokens(client) -> dict:
    assert AuthActions(client).login().status_code == 302
    response, _ = OAuthActions(client).code_flow(client_id="web", scope="openid offline_access")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def introspect(client, token: str) -> dict:
    response = client.post("/connect/introspect", data={"token": token}, headers=WEB)
    assert response.status_code == 200
    return response.get_json()


def test_a_refresh_token_its_client_may_no_longer_use_is_inactive(app, client, runner, flow_clients):
    """`clients update --no-offline-access` (or the refresh grant switched off): the refresh grant
    refuses the client's refresh tokens (unauthorized_client), so introspection must call them
    inactive, as it does one the grant refuses for a missing second factor."""
    refresh_token = web_tokens(client)["refresh_token"]
    assert introspect(client, refresh_token)["active"] is True
    result = runner.invoke(args=["clients", "update", "web", "--no-offline-access"])
    assert result.exit_code == 0, result.output

    refreshed = OAuthActions(client).token("web", grant_type="refresh_token", refresh_token=refresh_token)
    assert refreshed.status_code in (400, 401), refreshed.get_json()
    assert introspect(client, refresh_token) == {"active": False}


def test_a_disabled_users_refresh_token_is_inactive(app, client, flow_clients):
    """A refresh token a rotation in flight stored as its user was disabled is not revoked; the
    refresh grant refuses it (the user is disabled), and introspection must say so too."""
    refresh_token = web_tokens(client)["refresh_token"]
    with app.app_context():
        db.session.execute(update(User).where(User.username == "alice").values(enabled=False))
        db.session.commit()

    refreshed = OAuthActions(client).token("web", grant_type="refresh_token", refresh_token=refresh_token)
    assert refreshed.status_code == 400 and refreshed.get_json()["error"] == "invalid_grant"
    assert introspect(client, refresh_token) == {"active": False}


def _set_back_access_token_alg(app) -> str:
    """ACCESS_TOKEN_SIGNING_ALG moved to RS256 by another instance and set back here: the ES256 key
    is retired with no successor and still signs; its kid."""
    from identity.services import keys
    from test_keys import issue, kid_of, same_database_app

    first = kid_of(issue(app))  # ES256, the default
    moved = same_database_app(app, ACCESS_TOKEN_SIGNING_ALG="RS256")
    try:
        with moved.app_context():
            keys._reload()  # the updated instance retires the ES256 key
    finally:
        with moved.app_context():
            db.engine.dispose()
    with app.app_context():
        keys._reload()
    assert kid_of(issue(app)) == first  # set back: the retired key signs on
    return first


def test_a_staged_rotation_after_the_access_token_alg_was_set_back_publishes_before_it_signs(app, client, seeded):
    """docs/signing-keys.md: `keys rotate` publishes a new key that signs only after the propagation
    time. With ACCESS_TOKEN_SIGNING_ALG moved to RS256 and set back (the ES256 key retired, still
    signing while published long enough), the staged rotation made an ES256 key that signed at once:
    a resource server holding the JWKS it fetched a moment before could not verify the next token."""
    from identity.services import keys
    from test_keys import issue, kid_of, published

    _set_back_access_token_alg(app)
    cached = published(client)  # what a resource server holds
    with app.app_context():
        keys.rotate(["ES256"])
    signed_by = kid_of(issue(app))
    assert signed_by in cached, "the token after a staged rotation is signed by a key the cached JWKS lacks"


def test_keys_rotate_now_warns_that_a_cached_jwks_still_verifies_the_old_keys_tokens(app, client, runner, seeded):
    """`keys rotate --now` is for a compromised key. It said "tokens in flight signed by the old keys
    are refused from now on"; a resource server that validates locally with the JWKS it cached
    (Cache-Control: max-age=DISCOVERY_CACHE_SECONDS) still accepts them, forged ones too, until
    it fetches the JWKS again. The operator must be told, to have such servers refetch it."""
    import jwt

    from test_keys import issue, published

    before = issue(app)
    cached = published(client)
    result = runner.invoke(args=["keys", "rotate", "--now"])
    assert result.exit_code == 0, result.output
    kid = jwt.get_unverified_header(before)["kid"]
    assert kid not in published(client)
    claims = jwt.decode(before, jwt.PyJWK(cached[kid]).key, algorithms=[cached[kid]["alg"]],
                        options={"verify_aud": False})  # what such a resource server still concludes
    assert claims["jti"]
    seconds = app.config["DISCOVERY_CACHE_SECONDS"]
    output = " ".join(result.output.split())
    assert f"resource servers that cached the JWKS still accept tokens signed by the old keys for up to {seconds} s" \
        in output, output
