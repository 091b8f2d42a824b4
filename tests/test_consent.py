"""Consent for clients with require_consent, remembered consent, prompt=consent, and the grants page."""

import time
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from sqlalchemy import func, select

from actions import AuthActions, OAuthActions, pkce_pair, redirect_params
from conftest import csrf_token
from identity.extensions import db
from identity.models import AuthorizationCode, Consent, RefreshToken


@pytest.fixture
def oauth(client, flow_clients):
    AuthActions(client).login()
    return OAuthActions(client)


def _spa(oauth, **extra):
    _, challenge = pkce_pair()
    return oauth.authorize(client_id="spa", scope="openid profile IdentityServerApi", code_challenge=challenge,
                           code_challenge_method="S256", **extra)


def _count(app, model):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def test_consent_page_lists_scopes_with_display_names(oauth):
    response = _spa(oauth)
    assert response.status_code == 302 and response.headers["Location"].startswith("/consent?")
    page = oauth.client.get(response.headers["Location"])
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert "Single-Page App" in html and "Manage your account (local API)" in html and "Your profile" in html


def test_deny_returns_access_denied_and_writes_nothing(oauth, app):
    location = _spa(oauth, state="d1").headers["Location"]
    response = oauth.consent(location, decision="deny")
    params = redirect_params(response.headers["Location"])
    assert response.headers["Location"].startswith("http://127.0.0.1:8080/callback")
    assert params == {"error": "access_denied", "error_description": params.get("error_description"), "state": "d1"} or \
        (params["error"] == "access_denied" and params["state"] == "d1")
    assert _count(app, Consent) == 0 and _count(app, AuthorizationCode) == 0


def test_allow_without_remember_asks_again_next_time(oauth, app):
    response = oauth.consent(_spa(oauth).headers["Location"], decision="allow")
    assert "code" in redirect_params(response.headers["Location"])
    assert _count(app, Consent) == 0
    assert _spa(oauth).headers["Location"].startswith("/consent")


def test_remembered_consent_skips_the_page_until_prompt_consent(oauth, app):
    oauth.consent(_spa(oauth).headers["Location"], decision="allow", remember=True)
    assert _count(app, Consent) == 1
    again = _spa(oauth)
    assert "code" in redirect_params(again.headers["Location"])
    forced = _spa(oauth, prompt="consent")
    assert forced.headers["Location"].startswith("/consent")
    assert "prompt=consent" not in forced.headers["Location"]


def test_remembered_consent_does_not_cover_new_scopes(oauth):
    oauth.consent(_spa(oauth).headers["Location"], decision="allow", remember=True)
    _, challenge = pkce_pair()
    wider = oauth.authorize(client_id="spa", scope="openid profile email IdentityServerApi", code_challenge=challenge,
                            code_challenge_method="S256")
    assert wider.headers["Location"].startswith("/consent")


def test_consent_post_without_csrf_is_refused(oauth, app):
    location = _spa(oauth).headers["Location"]
    response = oauth.client.post(location, data={"decision": "allow"})
    assert response.status_code == 400
    assert _count(app, AuthorizationCode) == 0


def test_consent_with_tampered_request_shows_error(oauth):
    location = _spa(oauth).headers["Location"]
    parts = urlsplit(location)
    query = dict(parse_qsl(parts.query))
    query["redirect_uri"] = "https://evil.example.com/cb"
    location = parts.path + "?" + urlencode(query)
    page = oauth.client.get(location)
    assert page.status_code == 400 and "Location" not in page.headers


def test_grants_page_lists_and_revokes_consent_and_refresh_tokens(oauth, app, client):
    oauth.consent(_spa(oauth).headers["Location"], decision="allow", remember=True)
    token, _ = oauth.code_flow(client_id="native", scope="openid offline_access")
    assert "refresh_token" in token.get_json()
    page = client.get("/account/grants")
    html = page.get_data(as_text=True)
    assert "Single-Page App" in html and "Native App" in html
    response = client.post("/account/grants/revoke", data={"csrf_token": csrf_token(html), "client_id": "native"})
    assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RefreshToken).where(RefreshToken.revoked_at.is_(None))) == 0
    refused = oauth.token("native", grant_type="refresh_token", refresh_token=token.get_json()["refresh_token"])
    assert refused.status_code == 400
    client.post("/account/grants/revoke", data={"csrf_token": csrf_token(html), "client_id": "spa"})
    assert _count(app, Consent) == 0
    assert "No apps have access" in client.get("/account/grants").get_data(as_text=True)


def test_grants_page_needs_sign_in(client, seeded):
    assert client.get("/account/grants").status_code == 302


@pytest.mark.parametrize("extra", [{"prompt": "login"}, {"max_age": "0"}])
def test_the_consent_page_asks_for_a_new_sign_in_where_the_authorization_endpoint_would(oauth, app, extra):
    """The consent page applies the authorization endpoint's checks before its own: opened with a
    request that asks for a new sign-in (prompt=login, or max_age=0, which is the same),
    it sends the person to sign in, and allowing there issues nothing."""
    location = _spa(oauth).headers["Location"]  # the consent page for a request without them
    asked = location + "&" + urlencode(extra)
    page = oauth.client.get(asked)
    assert page.status_code == 302 and page.headers["Location"].startswith("/account/login?"), page.status_code
    token = csrf_token(oauth.client.get(location).get_data(as_text=True))
    allowed = oauth.client.post(asked, data={"csrf_token": token, "decision": "allow"})
    assert "code" not in redirect_params(allowed.headers.get("Location", ""))
    assert _count(app, AuthorizationCode) == 0


def test_revoking_an_app_revokes_the_access_token_of_a_rotation_committed_meanwhile(oauth, app, client, database_uri,
                                                                                    monkeypatch):
    """The app rotates its refresh token (another worker) while the user revokes it on the
    grants page: the new refresh token is revoked, and the access token issued with it as well.
    PostgreSQL only: on SQLite the revocation's first write (the consent's) holds the database's
    write lock, and the rotation commits before it or after it."""
    from identity.store.connection import autocommit_connection
    from races import access_token_refused, rotated_by_another_worker_during

    with app.app_context():
        if autocommit_connection().is_sqlite:
            pytest.skip("PostgreSQL only")
    token, _ = oauth.code_flow(client_id="native", scope="openid offline_access")
    rotated = rotated_by_another_worker_during(monkeypatch, "client_grants_ended", database_uri, "native",
                                                token.get_json()["refresh_token"])
    html = client.get("/account/grants").get_data(as_text=True)

    assert client.post("/account/grants/revoke", data={"csrf_token": csrf_token(html), "client_id": "native"}).status_code == 302

    assert rotated["response"].status_code == 200
    renewed = rotated["response"].get_json()
    assert oauth.token("native", grant_type="refresh_token", refresh_token=renewed["refresh_token"]).status_code == 400
    assert access_token_refused(app, client, renewed) == (True, 401)



def test_a_consent_remembered_by_another_request_meanwhile_is_no_error(oauth, app, database_uri, monkeypatch):
    """Allow clicked twice (two requests a moment apart, in two workers): both remember the
    consent. Each answers the client with a code, and the remembered scopes are both requests'
    (not a unique-key error answered 503 "database unavailable")."""
    from identity.models import User
    from identity.services import audit
    from identity.services import consent as consent_service
    from identity.store.connection import autocommit_connection
    from races import in_thread, lock_waiters, other_workers, wait_until

    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == "alice"))
        is_sqlite = autocommit_connection().is_sqlite
    location = _spa(oauth, state="twice").headers["Location"]
    original, results, threads = audit.record, {}, []

    def other_request():
        with other_workers(database_uri) as (other,), other.app_context():
            consent_service.remember_consent(user_id, "spa", ["openid", "email"])

    def meanwhile(event, *args, **kwargs):
        """The other request runs as this one records its consent: it ends first, or waits for this
        one's lock (PostgreSQL: seen in pg_locks; SQLite: given a second)."""
        if event == "consent_granted" and not threads:
            threads.append(in_thread(results, "other", other_request))
            started = time.monotonic()
            wait_until(lambda: not threads[0].is_alive() or (
                time.monotonic() - started > 1 if is_sqlite else lock_waiters(app) >= 1))
        return original(event, *args, **kwargs)

    monkeypatch.setattr(audit, "record", meanwhile)
    response = oauth.consent(location, decision="allow", remember=True)
    threads[0].join(30)

    assert response.status_code == 303, response.status_code
    assert "code" in redirect_params(response.headers["Location"])
    assert results["other"] is None
    with app.app_context():
        assert db.session.scalars(select(Consent.scopes)).all() == [["IdentityServerApi", "email", "openid", "profile"]]


def test_grants_page_lists_apps_that_hold_only_access_tokens(oauth, app, client):
    """An app that got only an access token (the implicit flow; a code flow without offline_access
    or remembered consent) can call APIs for the user for the token's lifetime, and revoking it on
    this page ends that token (docs/security.md). The page listed only remembered consents and
    refresh tokens, so it never offered to revoke such an app."""
    implicit = oauth.authorize(client_id="implicit", response_type="id_token token", scope="openid profile",
                               nonce="n-grants")
    implicit_token = redirect_params(implicit.headers["Location"])["access_token"]
    native, _ = oauth.code_flow(client_id="native", scope="openid IdentityServerApi")
    native_token = native.get_json()["access_token"]
    assert "refresh_token" not in native.get_json()

    html = client.get("/account/grants").get_data(as_text=True)
    assert "Implicit App" in html and "Native App" in html
    for client_id in ("implicit", "native"):
        assert client.post("/account/grants/revoke", data={"csrf_token": csrf_token(html),
                                                           "client_id": client_id}).status_code == 302
    for token in (implicit_token, native_token):
        assert client.get("/connect/userinfo", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert "No apps have access" in client.get("/account/grants").get_data(as_text=True)


def test_a_sign_in_that_max_age_asked_for_is_not_asked_for_again_at_consent(client, flow_clients, app):
    """OpenID Connect Core 3.1.2.1: past max_age the OP re-authenticates the person; the sign-in it
    asked for satisfies the request. Reading the consent page longer than max_age must not send the
    person to sign in again, and again after that (with max_age=1, as the conformance suite's
    oidcc-max-age-1 sends, no one could ever allow)."""
    from identity.models import UserSession

    oauth = OAuthActions(client)
    asked = _spa(oauth, max_age="60")
    assert asked.headers["Location"].startswith("/account/login?")
    return_url = dict(parse_qsl(urlsplit(asked.headers["Location"]).query))["returnUrl"]
    signed_in = AuthActions(client).login(return_url=return_url)
    consent = client.get(signed_in.headers["Location"])  # back at the authorization endpoint: consent
    assert consent.status_code == 302 and consent.headers["Location"].startswith("/consent?")
    page = client.get(consent.headers["Location"])
    with app.app_context():  # the person reads the page for two minutes
        db.session.execute(UserSession.__table__.update().values(auth_time=int(time.time()) - 120))
        db.session.commit()
    allowed = client.post(consent.headers["Location"],
                          data={"csrf_token": csrf_token(page.get_data(as_text=True)), "decision": "allow"})
    assert allowed.status_code == 303 and "code" in redirect_params(allowed.headers["Location"]), allowed.headers.get("Location")


def test_grants_page_reads_the_scopes_names_once_not_once_an_app(app, client, seeded):
    """A user who granted many apps: the page named each app's scopes with a read of every scope
    row per app (11 s for 2,000 grants of 500 scopes on SQLite), and revoking one lists them too."""
    from statements import statements
    from identity.models import User

    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.add_all([Consent(user_id=user_id, client_id=f"app-{n:02d}", scopes=["openid", "profile"],
                                    created_at=int(time.time())) for n in range(12)])
        db.session.commit()
    AuthActions(client).login()
    with statements(app) as log:
        page = client.get("/account/grants")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert all(f"app-{n:02d}" in html for n in range(12))
    scope_reads = [s for s in log.pooled if "FROM api_scopes" in s or "FROM identity_resources" in s]
    assert len(scope_reads) == 2, f"{len(scope_reads)} reads of the scopes for 12 apps"
