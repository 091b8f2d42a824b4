"""Signing keys and JWTs, third review: what the key ring, KEY_ENCRYPTION_KEY and the bearer
endpoints still did wrong (each test was seen failing on the code before its fix)."""

import secrets

import pytest
from cryptography.fernet import Fernet

from identity.extensions import db
from identity.services import tokens

from actions import AuthActions, OAuthActions, redirect_params, web_access_token
from mfa_actions import enrol_user, sign_in_with_code, step_clock  # noqa: F401  (the fixture)
from test_keys import issue, kid_of, published, same_database_app, verify


def _dispose(app) -> None:
    with app.app_context():
        db.engine.dispose()


# --- KEY_ENCRYPTION_KEY ----------------------------------------------------------------------------


@pytest.mark.parametrize("app_config", [{"KEY_ENCRYPTION_KEY": Fernet.generate_key().decode()}])
def test_an_authenticator_app_survives_the_documented_key_encryption_key_rotation(app, seeded, app_config, step_clock):
    """docs/signing-keys.md's three steps (new key first, `keys reencrypt`, the old key dropped):
    the TOTP secrets KEY_ENCRYPTION_KEY also encrypts must be moved under the new key too, or every
    user with an authenticator app is refused (a 500) once the old key is dropped."""
    old_kek, new_kek = app_config["KEY_ENCRYPTION_KEY"], Fernet.generate_key().decode()
    secret, _ = enrol_user(app)

    both = same_database_app(app, KEY_ENCRYPTION_KEY=[new_kek, old_kek])
    try:
        with both.app_context():
            result = both.test_cli_runner().invoke(args=["keys", "reencrypt"])
        assert result.exit_code == 0, result.output
    finally:
        _dispose(both)

    only_new = same_database_app(app, KEY_ENCRYPTION_KEY=new_kek, SESSION_COOKIE_SECURE=False)
    try:
        response = sign_in_with_code(only_new.test_client(), secret)
        assert response.status_code == 302, response.status_code
    finally:
        _dispose(only_new)


@pytest.mark.parametrize("app_config", [{"KEY_ENCRYPTION_KEY": Fernet.generate_key().decode()}])
def test_reencrypt_names_an_authenticator_app_secret_it_cannot_open_and_changes_nothing(app, seeded, app_config,
                                                                                      step_clock):
    """A secret enrolled under a key since dropped from the list: `keys reencrypt` says which (not
    "signing key totp:1") and changes nothing, signing keys included."""
    from sqlalchemy import text

    old_kek, dropped, new_kek = app_config["KEY_ENCRYPTION_KEY"], Fernet.generate_key().decode(), Fernet.generate_key().decode()
    issue(app)  # the signing keys, under old_kek
    enrolling = same_database_app(app, KEY_ENCRYPTION_KEY=[dropped, old_kek])
    try:
        enrol_user(enrolling)  # alice's secret, under `dropped`
    finally:
        _dispose(enrolling)
    with app.app_context():
        before = list(db.session.execute(text("SELECT private_jwk FROM signing_keys UNION ALL "
                                              "SELECT secret_encrypted FROM totp_factors")))

    rotating = same_database_app(app, KEY_ENCRYPTION_KEY=[new_kek, old_kek])
    try:
        with rotating.app_context():
            result = rotating.test_cli_runner().invoke(args=["keys", "reencrypt"])
    finally:
        _dispose(rotating)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "authenticator app secret of user" in result.output and "nothing was changed" in result.output, result.output
    with app.app_context():
        after = list(db.session.execute(text("SELECT private_jwk FROM signing_keys UNION ALL "
                                             "SELECT secret_encrypted FROM totp_factors")))
    assert after == before


# --- the key ring ------------------------------------------------------------------------------------


def test_an_emergency_rotation_unpublishes_the_keys_of_an_algorithm_no_longer_configured(app, seeded):
    """docs/signing-keys.md: `keys rotate --now` revokes every key. After ACCESS_TOKEN_SIGNING_ALG
    moved from ES256 to RS256 the ES256 key signs nothing, but it was still published (and its
    tokens accepted) after the emergency rotation meant to end a compromised key."""
    es256_token = issue(app)  # ES256, the default
    es256_kid = kid_of(es256_token)

    moved = same_database_app(app, ACCESS_TOKEN_SIGNING_ALG="RS256")
    try:
        with moved.app_context():
            result = moved.test_cli_runner().invoke(args=["keys", "rotate", "--now"])
        assert result.exit_code == 0, result.output
        assert es256_kid not in published(moved.test_client()), "the ES256 key is still published"
        with pytest.raises(tokens.InvalidToken):
            verify(moved, es256_token)
        assert kid_of(issue(moved)) in published(moved.test_client())
    finally:
        _dispose(moved)


# --- the userinfo endpoint ---------------------------------------------------------------------------


@pytest.fixture
def oauth(client, flow_clients):
    AuthActions(client).login()
    return OAuthActions(client)


def test_userinfo_takes_the_access_token_from_a_posted_form(oauth):
    """RFC 6750 section 2.2, as IdentityServer4's userinfo endpoint takes it (OpenID Connect Core
    5.3.1: GET and POST): a form body's access_token. Only one way at once (section 2)."""
    token = web_access_token(oauth)
    posted = oauth.client.post("/connect/userinfo", data={"access_token": token})
    assert posted.status_code == 200, (posted.status_code, posted.headers.get("WWW-Authenticate"))
    assert posted.get_json()["preferred_username"] == "alice"

    both = oauth.client.post("/connect/userinfo", data={"access_token": token}, headers={"Authorization": "Bearer " + token})
    assert both.status_code == 400 and 'error="invalid_request"' in both.headers["WWW-Authenticate"]
    twice = oauth.client.post("/connect/userinfo", data=f"access_token={token}&access_token={token}",
                             content_type="application/x-www-form-urlencoded")
    assert twice.status_code == 400 and 'error="invalid_request"' in twice.headers["WWW-Authenticate"]
    forged = oauth.client.post("/connect/userinfo", data={"access_token": token[:-4] + "AAAA"})
    assert forged.status_code == 401 and 'error="invalid_token"' in forged.headers["WWW-Authenticate"]
    # not in a query string, nor in a GET's body (RFC 6750 section 2.2: not GET)
    queried = oauth.client.get("/connect/userinfo?access_token=" + token)
    assert queried.status_code == 401 and queried.headers["WWW-Authenticate"] == "Bearer"


# --- ID tokens ---------------------------------------------------------------------------------------


def _id_token_claims(id_token: str) -> dict:
    import base64
    import json

    payload = id_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_a_nonce_too_long_to_keep_is_invalid_request_not_a_503(oauth, app):
    """The nonce is kept with the code (and indexed, for the replay check) to go into the ID token:
    one of a few KiB broke PostgreSQL's index row limit, a 503 after the sign-in. It is refused as
    IdentityServer refuses it (InputLengthRestrictions.Nonce, 300), and no code is made."""
    from identity.models import AuthorizationCode
    from sqlalchemy import func, select

    response = oauth.client.post("/connect/authorize", data=oauth.authorize_params(
        client_id="web", scope="openid", state="s-1", nonce=secrets.token_hex(1500)))  # random: not compressed
    assert response.status_code == 303, response.status_code
    params = redirect_params(response.headers["Location"])
    assert params.get("error") == "invalid_request" and params["state"] == "s-1", params
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuthorizationCode)) == 0

    longest = "n" * 300
    response = oauth.authorize(client_id="web", scope="openid", nonce=longest)
    code = redirect_params(response.headers["Location"])["code"]
    tokens_ = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb").get_json()
    assert _id_token_claims(tokens_["id_token"])["nonce"] == longest


def test_an_id_token_hint_signed_by_a_key_retired_past_its_retention_still_signs_the_person_out(oauth, app, monkeypatch):
    """Refresh tokens bring no new ID token, so an app holds the one it got at sign-in as long as
    its session, months maybe. Once a staged rotation had retired its key and the retention time
    had passed (two weeks after the successor took over: the ID token could be two weeks old),
    RP-initiated logout with it as the hint was an error page and nobody was signed out. A key
    revoked by `keys rotate --now` still makes its hints refused."""
    from identity.clock import now as real_now
    from identity.services import keys

    response = oauth.authorize(client_id="web", scope="openid profile")
    code = redirect_params(response.headers["Location"])["code"]
    hint = oauth.token("web", grant_type="authorization_code", code=code,
                       redirect_uri="https://web.example.com/cb").get_json()["id_token"]
    with app.app_context():
        keys.rotate()  # staged: the successor signs after the propagation time
    later = app.config["SIGNING_KEY_PROPAGATION_SECONDS"] + app.config["SIGNING_KEY_RETENTION_SECONDS"] + 120
    monkeypatch.setattr(keys, "now", lambda: real_now() + later)
    assert kid_of(hint) not in published(oauth.client)

    logout = {"id_token_hint": hint, "post_logout_redirect_uri": "https://web.example.com/bye", "state": "s-2"}
    response = oauth.client.get("/connect/endsession", query_string=logout)
    assert response.status_code == 302, response.status_code
    assert response.headers["Location"] == "https://web.example.com/bye?state=s-2"
    assert oauth.client.get("/diagnostics").status_code == 302  # signed out

    AuthActions(oauth.client).login()
    with app.app_context():
        keys.rotate(immediate=True)
    assert oauth.client.get("/connect/endsession", query_string=logout).status_code == 400


# --- tokens longer than the default limit -------------------------------------------------------------


@pytest.mark.parametrize("app_config", [{"JWT_MAX_LENGTH": 32768}])
def test_revocation_and_introspection_take_tokens_up_to_jwt_max_length(app, client, seeded):
    """A deployment whose access tokens outgrow 8 KiB (many API scopes) raises JWT_MAX_LENGTH, and
    the bearer check takes them; introspection called them inactive and revocation answered 200
    without revoking anything, by a limit of 8192 of their own."""
    import base64
    import json

    from identity.services.seed import apply_seed, load_seed

    names = [f"reports.{i:03d}.{'x' * 50}" for i in range(100)]
    with app.app_context():
        apply_seed(load_seed(json.dumps({
            "api_scopes": [{"name": name} for name in names],
            "clients": [{"client_id": "bulk", "client_name": "Bulk", "client_secrets": ["bulk-secret-0123456789"],
                         "allowed_grant_types": ["client_credentials"], "allowed_scopes": names}]})))
    basic = {"Authorization": "Basic " + base64.b64encode(b"bulk:bulk-secret-0123456789").decode()}
    issued = client.post("/connect/token", data={"grant_type": "client_credentials"}, headers=basic)
    assert issued.status_code == 200, issued.get_data(as_text=True)
    token = issued.get_json()["access_token"]
    assert len(token) > 8192

    assert client.post("/connect/introspect", data={"token": token}, headers=basic).get_json()["active"] is True
    assert client.post("/connect/revocation", data={"token": token}, headers=basic).status_code == 200
    assert client.post("/connect/introspect", data={"token": token}, headers=basic).get_json() == {"active": False}
