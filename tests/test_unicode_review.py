"""Text spelled in other Unicode ways (the internationalization review): user names and
addresses, second factors' codes."""

import pytest
from flask_migrate import downgrade, upgrade

from app import create_app
from conftest import make_config
from identity.extensions import db
from mfa_actions import step_clock  # noqa: F401 (a fixture)
from test_migration_sessions import _migrate, _rows, _run, scratch_uri  # noqa: F401 (a fixture)

BEFORE_NFKC = "d7f3b9e1a5c8"
NFKC = "c3e7a1d5f9b4"


def _user(app, user_id, username, key, email=None, email_key=None):
    _run(app, "INSERT INTO users (id, subject, username, username_normalized, email, email_normalized, password_hash, "
              "password_version, password_changed_at, failed_attempts, locked_until, created_at) "
              "VALUES (:id, :sub, :username, :key, :email, :email_key, 'x', 1, 100, 0, 0, 100)",
         id=user_id, sub=f"sub-{user_id}", username=username, key=key, email=email, email_key=email_key)


def test_the_upgrade_gives_existing_users_nfkc_casefold_keys(scratch_uri, capfd):
    """The keys stored under case folding alone: an account whose user name was typed with a
    combining accent or in full-width letters could not sign in by its name once the lookup
    normalizes (NFKC); an account whose key would be another's keeps its own, and is named."""
    app = create_app(make_config(scratch_uri))
    _migrate(app, upgrade, BEFORE_NFKC)
    _user(app, 1, "Cafe\u0301", "cafe\u0301", "Bob@Example.com", "bob@example.com")
    _user(app, 2, "\uff21lice", "\uff41lice")
    _user(app, 3, "carol", "carol")
    _user(app, 4, "\uff43arol", "\uff43arol")  # its key is carol's: it keeps its own
    _user(app, 5, "bob\uff20example.com", "bob\uff20example.com")  # its key would be bob's address

    _migrate(app, upgrade, NFKC)
    keys = dict((i, (u, e)) for i, u, e in _rows(app, "SELECT id, username_normalized, email_normalized FROM users"))
    assert keys == {1: ("caf\u00e9", "bob@example.com"), 2: ("alice", None), 3: ("carol", None), 4: ("\uff43arol", None),
                    5: ("bob\uff20example.com", None)}
    err = capfd.readouterr().err
    assert "user id 4" in err and "user id 5" in err

    _migrate(app, downgrade, BEFORE_NFKC)
    keys = dict(_rows(app, "SELECT id, username_normalized FROM users"))
    assert keys == {1: "cafe\u0301", 2: "\uff41lice", 3: "carol", 4: "\uff43arol", 5: "bob\uff20example.com"}
    with app.app_context():
        db.engine.dispose()


# --- second factors ------------------------------------------------------------------------------------


FULL_WIDTH = str.maketrans("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-", "０１２３４５６７８９ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺ－")


def test_an_app_code_typed_in_full_width_digits_signs_in(client, app, seeded, step_clock):
    """An input method's wide mode (Japanese, Chinese) types "１２３４５６": the right code, which
    was refused as a wrong one and counted towards the lockout."""
    from mfa_actions import code_at, enrol_user, password_step, second_step

    secret, _ = enrol_user(app)
    assert "/account/login/mfa" in password_step(client).headers["Location"]
    response = second_step(client, code_at(secret).translate(FULL_WIDTH))
    assert response.status_code == 302, response.status_code
    assert "/account/login" not in response.headers["Location"]


def test_a_recovery_code_typed_in_full_width_signs_in(client, app, seeded, step_clock):
    from mfa_actions import enrol_user, password_step, second_step

    _, codes = enrol_user(app)
    assert "/account/login/mfa" in password_step(client).headers["Location"]
    response = second_step(client, codes[0].translate(FULL_WIDTH))
    assert response.status_code == 302, response.status_code
    assert "/account/login" not in response.headers["Location"]


# --- passkeys --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("app_config", [{"ISSUER": "https://B\u00fccher.example:443"}])
def test_passkeys_work_under_an_international_issuer_host(client, app, seeded, app_config):
    """A browser's clientDataJSON names the page's origin as it serializes it: the host in its
    IDNA form, lower case, no default port. The relying party's origin and id were the issuer as
    written ("https://Bücher.example:443"), which no browser's answer matched: every passkey
    registration and sign-in under such an issuer was refused."""
    from actions import AuthActions
    from conftest import csrf_token
    from webauthn_keys import SoftKey

    origin, rp_id = "https://xn--bcher-kva.example", "xn--bcher-kva.example"
    AuthActions(client).login()
    csrf = csrf_token(client.get("/account/mfa").get_data(as_text=True))
    options = client.post("/account/mfa/passkeys/options", headers={"X-CSRFToken": csrf}).get_json()
    assert options["rp"]["id"] == rp_id
    key = SoftKey()
    created = client.post("/account/mfa/passkeys", headers={"X-CSRFToken": csrf},
                          json={"credential": key.registration(options["challenge"], origin=origin, rp_id=rp_id),
                                "name": "Laptop"})
    assert created.status_code == 201, created.get_json()


# --- a client's international host in the Content-Security-Policy ---------------------------------------

IDN_HOST = "\u4f8b\u3048.jp"  # 例え.jp: not Latin-1, so no header can carry it as written
IDN_ASCII = IDN_HOST.encode("idna").decode()


def _idn_client(app, **fields):
    import json

    from identity.services.seed import apply_seed, load_seed

    doc = {"api_scopes": [], "users": [], "clients": [{
        "client_id": "idn", "client_name": "IDN", "allowed_grant_types": ["authorization_code"],
        "redirect_uris": [f"https://{IDN_HOST}/cb"], "allowed_scopes": ["openid", "profile"], **fields}]}
    with app.app_context():
        apply_seed(load_seed(json.dumps(doc)))


def test_a_sign_in_page_for_a_client_with_an_international_host_has_an_ascii_csp(app, client, seeded):
    """The sign-in page lists the client's origin in form-action as written: a header that no
    server can send for 例え.jp (the page never arrived: the connection closed, or a 500), and a
    source no browser matches for bücher.example (the post's redirect to the client was blocked)."""
    from urllib.parse import urlencode

    from actions import pkce_pair

    _idn_client(app)
    _, challenge = pkce_pair()
    query = urlencode({"client_id": "idn", "response_type": "code", "scope": "openid", "state": "s",
                       "redirect_uri": f"https://{IDN_HOST}/cb", "code_challenge": challenge,
                       "code_challenge_method": "S256"})
    page = client.get("/account/login?" + urlencode({"returnUrl": "/connect/authorize?" + query}))
    assert page.status_code == 200
    csp = page.headers["Content-Security-Policy"]
    assert csp.isascii(), csp
    assert f"form-action 'self' https://{IDN_ASCII}" in csp


def test_the_signed_out_page_frames_an_international_host_with_an_ascii_csp(app, client, seeded):
    from actions import AuthActions, OAuthActions, pkce_pair, redirect_params

    _idn_client(app, frontchannel_logout_uri=f"https://{IDN_HOST}/logout")
    AuthActions(client).login()
    oauth = OAuthActions(client)
    oauth.REDIRECTS = {**oauth.REDIRECTS, "idn": f"https://{IDN_HOST}/cb"}
    _, challenge = pkce_pair()
    authorized = oauth.authorize(client_id="idn", scope="openid", code_challenge=challenge, code_challenge_method="S256")
    assert "code" in redirect_params(authorized.headers["Location"])
    signed_out = AuthActions(client).logout()
    assert signed_out.status_code == 200
    csp = signed_out.headers["Content-Security-Policy"]
    assert csp.isascii(), csp
    assert f"frame-src https://{IDN_ASCII}" in csp


def test_a_form_post_answer_to_an_international_host_has_an_ascii_csp(app, client, seeded):
    from actions import AuthActions, OAuthActions, pkce_pair

    _idn_client(app)
    AuthActions(client).login()
    oauth = OAuthActions(client)
    oauth.REDIRECTS = {**oauth.REDIRECTS, "idn": f"https://{IDN_HOST}/cb"}
    _, challenge = pkce_pair()
    answer = oauth.authorize(client_id="idn", scope="openid", code_challenge=challenge, code_challenge_method="S256",
                             response_mode="form_post")
    assert answer.status_code == 200
    csp = answer.headers["Content-Security-Policy"]
    assert csp.isascii(), csp
    assert f"form-action https://{IDN_ASCII};" in csp


# --- the issuer -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("app_config", [{"ISSUER": "https://id.\u4f8b\u3048.jp"}])
def test_an_invalid_client_answer_under_an_international_issuer_can_be_sent(client, seeded):
    """The 401's challenge names the issuer as its realm: under https://id.例え.jp the header
    could not be sent (not Latin-1), so every invalid_client answer was a dropped connection."""
    import base64

    basic = base64.b64encode(b"service:wrong-secret").decode()
    response = client.post("/connect/token", data={"grant_type": "client_credentials"},
                           headers={"Authorization": f"Basic {basic}"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].isascii(), response.headers["WWW-Authenticate"]
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="https://id.xn--r8jz45g.jp"')
