"""`email_verified` as stored and reported: ID tokens, userinfo, GET /localapi/account; the seed's
and the CLI's word for an operator-created address; the migration's default."""

import json

import pytest
import jwt
from sqlalchemy import select, text

from actions import AuthActions, OAuthActions, redirect_params
from identity.extensions import db
from identity.models import Client, User
from identity.services.seed import apply_seed, load_seed
from test_localapi_support import LocalApi, bearer


def set_verified(app, username: str, value: bool) -> None:
    with app.app_context():
        db.session.scalar(select(User).where(User.username == username)).email_verified = value
        db.session.commit()


def user_row(app, username: str) -> User:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == username))
        db.session.expunge(user)
        return user


def id_token_claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})  # the signature is checked elsewhere


@pytest.mark.parametrize("verified", [False, True])
def test_claims_follow_the_stored_flag(app, client, flow_clients, verified):
    set_verified(app, "alice", verified)
    AuthActions(client).login()
    token, _ = OAuthActions(client).code_flow(client_id="web", scope="openid email IdentityServerApi")
    assert token.status_code == 200, token.get_data(as_text=True)
    body = token.get_json()
    userinfo = client.get("/connect/userinfo", headers=bearer(body["access_token"])).get_json()
    assert userinfo["email"] == "alice@example.com"
    assert userinfo["email_verified"] is verified
    account = client.get("/localapi/account", headers=bearer(body["access_token"])).get_json()
    assert account["email_verified"] is verified
    assert account["pending_email"] is None


def test_the_front_channel_id_token_reports_the_flag(app, client, seeded):
    """response_type=id_token carries the claims itself (no userinfo): read from the session's user."""
    set_verified(app, "alice", True)
    AuthActions(client).login()
    with app.app_context():
        client_row = db.session.scalar(select(Client).where(Client.client_id == "mobile"))
        client_row.allowed_grant_types = ["implicit"]
        db.session.commit()
    response = OAuthActions(client).authorize(client_id="mobile", response_type="id_token", scope="openid email",
                                              nonce="n-1")
    assert response.status_code == 302, response.get_data(as_text=True)
    params = redirect_params(response.headers["Location"])
    claims = id_token_claims(params["id_token"])
    assert claims["email_verified"] is True


def test_the_migration_counts_existing_addresses_as_unverified(app):
    """A row written without the new columns (as before the migration) reads as unverified."""
    with app.app_context():
        db.session.execute(text(
            "INSERT INTO users (subject, username, username_normalized, email, email_normalized, password_hash,"
            " password_version, password_changed_at, failed_attempts, locked_until, created_at)"
            " VALUES ('s-old', 'old', 'old', 'old@example.com', 'old@example.com', 'x', 1, 0, 0, 0, 0)"))
        db.session.execute(text(
            "INSERT INTO clients (client_id, client_name, secret_hashes, allowed_grant_types, redirect_uris,"
            " post_logout_redirect_uris, allowed_cors_origins, allowed_scopes, require_consent, require_pkce,"
            " allow_offline_access, allow_access_tokens_via_browser, access_token_lifetime, enabled, created_at)"
            " VALUES ('old', 'Old', '[]', '[]', '[]', '[]', '[]', '[]', false, true, false, false, 3600, true, 0)"))
        db.session.commit()
    assert (user_row(app, "old").email_verified, user_row(app, "old").pending_email) == (False, None)
    with app.app_context():
        assert db.session.scalar(select(Client.require_verified_email).where(Client.client_id == "old")) is False


# --- the operator's word: seed and CLI -----------------------------------------------------------


def seed(app, users, clients=()):
    with app.app_context():
        return apply_seed(load_seed(json.dumps({"users": users, "clients": list(clients)})))


CAROL = {"username": "carol", "email": "carol@example.com", "password": "saffron-glacier-tumble-66"}


def test_seeded_users_are_unverified_unless_the_file_says_so(app):
    seed(app, [CAROL, {**CAROL, "username": "dave", "email": "dave@example.com", "email_verified": True}])
    assert user_row(app, "carol").email_verified is False
    assert user_row(app, "dave").email_verified is True


def test_reseeding_keeps_a_verification_and_a_new_address_starts_unverified(app):
    seed(app, [CAROL])
    set_verified(app, "carol", True)
    report = seed(app, [CAROL])  # email_verified false (the default) does not undo the owner's link
    assert user_row(app, "carol").email_verified is True
    assert report.unchanged == ["user carol"]
    seed(app, [{**CAROL, "email": "carol@example.org"}])
    assert (user_row(app, "carol").email, user_row(app, "carol").email_verified) == ("carol@example.org", False)
    report = seed(app, [{**CAROL, "email": "carol@example.org", "email_verified": True}])
    assert user_row(app, "carol").email_verified is True
    assert report.updated == ["user carol"]


def test_a_verified_flag_needs_an_address(app):
    with app.app_context(), pytest.raises(Exception) as err:
        load_seed(json.dumps({"users": [{"username": "erin", "password": CAROL["password"], "email_verified": True}]}))
    assert "email_verified" in str(err.value)


def test_seeded_clients_may_require_a_verified_address(app):
    client = {"client_id": "strict", "allowed_grant_types": ["authorization_code"],
              "redirect_uris": ["https://strict.example.com/cb"], "require_verified_email": True}
    seed(app, [], [client, {**client, "client_id": "lenient", "require_verified_email": False}])
    with app.app_context():
        flags = dict(db.session.execute(select(Client.client_id, Client.require_verified_email)).all())
    assert flags == {"strict": True, "lenient": False}


def test_cli_users_add_vouches_for_the_address_only_when_told(app, runner):
    result = runner.invoke(args=["users", "add", "frank", "--email", "frank@example.com"],
                           input=CAROL["password"] + "\n")
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["users", "add", "grace", "--email", "grace@example.com", "--email-verified"],
                           input=CAROL["password"] + "\n")
    assert result.exit_code == 0, result.output
    assert user_row(app, "frank").email_verified is False
    assert user_row(app, "grace").email_verified is True
    result = runner.invoke(args=["users", "add", "heidi", "--email-verified"], input=CAROL["password"] + "\n")
    assert result.exit_code != 0
    assert "email_verified" in result.output


def test_cli_clients_add_require_verified_email(app, runner):
    result = runner.invoke(args=["clients", "add", "strict", "--public", "--grant-type", "authorization_code",
                                 "--redirect-uri", "https://strict.example.com/cb", "--require-verified-email"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert db.session.scalar(select(Client.require_verified_email).where(Client.client_id == "strict")) is True


def test_the_account_reports_a_verification_made_after_the_token(app, client, seeded):
    token = LocalApi(app, client).token()
    assert client.get("/localapi/account", headers=bearer(token)).get_json()["email_verified"] is False
    set_verified(app, "alice", True)
    assert client.get("/localapi/account", headers=bearer(token)).get_json()["email_verified"] is True
