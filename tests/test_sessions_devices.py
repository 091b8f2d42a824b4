"""Sessions and devices: the page /account/sessions and GET/DELETE /localapi/sessions, with real
sign-ins and real tokens (services/devices.py behind both). What is ended stops working: the
browser session's cookie, the grant's refresh token and the access tokens issued in it."""

import base64
import re
import secrets
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from actions import AuthActions, OAuthActions, pkce_pair, redirect_params
from conftest import ALICE_PASSWORD, BOB_PASSWORD, FLOW_SECRETS, HttpsClient, csrf_token
from identity.extensions import db
from identity.models import AuditEvent, RefreshToken, UserSession
from identity.services import devices
from identity.services.user_agents import summarise, truncated_ip
from test_localapi_password import assert_rate_limited, limited
from test_localapi_support import CHEAP_ARGON2, api, bearer, problem_of  # noqa: F401  (fixture)

SCOPE = "openid IdentityServerApi offline_access"
LEGACY_BASIC = "Basic " + base64.b64encode(b"legacy:" + FLOW_SECRETS["legacy"].encode()).decode()
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
PHONE = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36"


@pytest.fixture
def app_config():
    return dict(CHEAP_ARGON2)


def password_grant(client, username="alice", password=ALICE_PASSWORD, user_agent="okhttp/4.12.0",
                   remote_addr="198.51.100.23") -> dict:
    """An app grant of the `legacy` client (password grant with offline_access): a new family."""
    response = client.post("/connect/token", data={
        "grant_type": "password", "username": username, "password": password, "scope": SCOPE,
    }, headers={"Authorization": LEGACY_BASIC, "User-Agent": user_agent},
        environ_base={"REMOTE_ADDR": remote_addr})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def refresh(client, refresh_token: str):
    return OAuthActions(client).token("legacy", grant_type="refresh_token", refresh_token=refresh_token)


def browser(app, user_agent=FIREFOX, remote_addr="203.0.113.7", username="alice", password=ALICE_PASSWORD):
    """A new browser (its own cookie jar) signed in."""
    app.test_client_class = HttpsClient
    signed_in = app.test_client()
    signed_in.environ_base.update({"HTTP_USER_AGENT": user_agent, "REMOTE_ADDR": remote_addr})
    assert AuthActions(signed_in).login(username, password).status_code == 302
    return signed_in


def sessions_of(client, token):
    response = client.get("/localapi/sessions", headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def by_kind(entries, kind):
    return [e for e in entries if e["kind"] == kind]


# --- what is kept, and how it is shown ---------------------------------------------------------


@pytest.mark.parametrize("user_agent, summary", [
    (PHONE, "Chrome on Android"),
    (FIREFOX, "Firefox on Linux"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.5 Mobile/15E148 Safari/604.1", "Safari on iOS"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
     "Safari/537.36 Edg/131.0.0.0", "Edge on Windows"),
    ("okhttp/4.12.0", "okhttp"),
    ("", "Unknown device"),
    (None, "Unknown device"),
])
def test_user_agents_are_summarised(user_agent, summary):
    assert summarise(user_agent) == summary


@pytest.mark.parametrize("address, network", [
    ("203.0.113.7", "203.0.113.0/24"), ("2001:db8:1:2::1", "2001:db8:1::/48"),
    ("::ffff:192.0.2.9", "192.0.2.0/24"), ("not an address", None), (None, None),
])
def test_addresses_are_truncated(address, network):
    assert truncated_ip(address) == network


def test_a_session_and_a_grant_keep_a_bounded_user_agent_and_a_truncated_address(app, flow_clients, client):
    long_agent = FIREFOX + " x" * 300
    browser(app, user_agent=long_agent, remote_addr="203.0.113.7")
    password_grant(client, user_agent="okhttp/4.12.0", remote_addr="2001:db8:5:6::9")
    with app.app_context():
        session = db.session.scalar(select(UserSession))
        token = db.session.scalar(select(RefreshToken))
    assert session.user_agent == long_agent[:200] and session.ip_address == "203.0.113.0/24"
    assert token.user_agent == "okhttp/4.12.0" and token.ip_address == "2001:db8:5::/48"


def test_a_refresh_keeps_the_refreshing_callers_device(app, flow_clients, client):
    tokens = password_grant(client, user_agent="okhttp/4.12.0", remote_addr="198.51.100.23")
    refreshed = client.post("/connect/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                            headers={"Authorization": LEGACY_BASIC,
                                     "User-Agent": "Dart/3.4 (dart:io)"}, environ_base={"REMOTE_ADDR": "192.0.2.200"})
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
    entries = sessions_of(client, refreshed.get_json()["access_token"])
    assert [(e["device"], e["ip_address"], e["current"]) for e in entries] == [("Dart", "192.0.2.0/24", True)]


# --- the local API -----------------------------------------------------------------------------


def test_the_list_shows_browsers_and_apps_with_the_callers_grant_current(app, flow_clients, client):
    browser(app, user_agent=PHONE, remote_addr="203.0.113.7")
    other = password_grant(client)
    mine = password_grant(client, user_agent="Dart/3.4 (dart:io)")
    entries = sessions_of(client, mine["access_token"])

    assert [e["current"] for e in entries] == [True, False, False]  # the caller's own grant first
    assert set(entries[0]) >= {"id", "kind", "client_id", "client_name", "created_at", "last_used_at", "current"}
    assert entries[0]["kind"] == "app" and entries[0]["client_id"] == "legacy"
    assert entries[0]["client_name"] == "Legacy App" and entries[0]["device"] == "Dart"
    [session] = by_kind(entries, "browser")
    assert session["client_name"] == "Browser" and session["client_id"] is None
    assert session["device"] == "Chrome on Android" and session["ip_address"] == "203.0.113.0/24"
    assert session["created_at"].endswith("Z") and session["last_used_at"].endswith("Z")
    assert len(by_kind(entries, "app")) == 2
    assert all(len(e["id"].partition("_")[2]) >= 20 for e in entries)  # opaque, not row numbers
    assert sessions_of(client, other["access_token"])[0]["id"] != entries[0]["id"]


def test_a_browser_session_for_a_client_is_named_after_it(app, flow_clients, client):
    signed_in = browser(app)
    oauth = OAuthActions(signed_in)
    # sign in again through an authorization request of `web`: the new session is for that client
    AuthActions(signed_in).logout()
    params = oauth.authorize_params(client_id="web", scope="openid")
    assert AuthActions(signed_in).login(return_url="/connect/authorize?" + urlencode(params)).status_code == 303
    entries = sessions_of(client, password_grant(client)["access_token"])
    assert [(e["client_id"], e["client_name"]) for e in by_kind(entries, "browser")] == [("web", "Web App")]


def test_ending_an_app_grant_revokes_its_refresh_and_access_tokens(app, flow_clients, client):
    victim, mine = password_grant(client), password_grant(client)
    [target] = [e for e in sessions_of(client, mine["access_token"]) if not e["current"]]

    response = client.delete(f"/localapi/sessions/{target['id']}", headers=bearer(mine["access_token"]))

    assert response.status_code == 204 and response.get_data() == b""
    assert client.get("/localapi/account", headers=bearer(victim["access_token"])).status_code == 401
    refused = refresh(client, victim["refresh_token"])
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"
    assert [e["current"] for e in sessions_of(client, mine["access_token"])] == [True]
    assert refresh(client, mine["refresh_token"]).status_code == 200
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "token_revoked")).all()
        assert [e.detail["reason"] for e in events] == ["ended_by_user"]


def test_ending_a_browser_session_signs_that_browser_out(app, flow_clients, client):
    signed_in = browser(app)
    assert signed_in.get("/account/sessions").status_code == 200
    mine = password_grant(client)
    [session] = by_kind(sessions_of(client, mine["access_token"]), "browser")

    assert client.delete(f"/localapi/sessions/{session['id']}", headers=bearer(mine["access_token"])).status_code == 204

    response = signed_in.get("/account/sessions")
    assert response.status_code == 302 and "/account/login" in response.headers["Location"]
    with app.app_context():
        assert db.session.scalar(select(UserSession.revoked_at)) is not None
        assert db.session.scalar(select(AuditEvent.event).where(AuditEvent.event == "session_ended"))


def test_a_code_minted_by_an_ended_session_does_not_redeem(app, flow_clients, client):
    signed_in = browser(app)
    oauth = OAuthActions(signed_in)
    verifier, challenge = pkce_pair()
    response = oauth.authorize(client_id="web", scope="openid", code_challenge=challenge, code_challenge_method="S256")
    code = redirect_params(response.headers["Location"])["code"]
    mine = password_grant(client)
    [session] = by_kind(sessions_of(client, mine["access_token"]), "browser")
    assert client.delete(f"/localapi/sessions/{session['id']}", headers=bearer(mine["access_token"])).status_code == 204

    redeemed = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri=oauth.REDIRECTS["web"],
                           code_verifier=verifier)
    assert redeemed.status_code == 400 and redeemed.get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize("entry", ["app_nope", "browser_nope", "nonsense", "app_", "x" * 300])
def test_an_unknown_id_is_a_404_problem(app, flow_clients, client, entry):
    mine = password_grant(client)
    response = client.delete(f"/localapi/sessions/{entry}", headers=bearer(mine["access_token"]))
    assert response.status_code == 404
    assert problem_of(response)["status"] == 404


def test_another_users_entry_is_answered_as_unknown(app, flow_clients, client):
    bobs = password_grant(client, "bob", BOB_PASSWORD)
    bob_browser = browser(app, username="bob", password=BOB_PASSWORD)
    alices = password_grant(client)
    bob_entries = sessions_of(client, bobs["access_token"])
    unknown = client.delete("/localapi/sessions/app_unknown", headers=bearer(alices["access_token"]))

    for entry in bob_entries:
        response = client.delete(f"/localapi/sessions/{entry['id']}", headers=bearer(alices["access_token"]))
        assert response.status_code == 404
        assert problem_of(response) == problem_of(unknown)
    assert len(sessions_of(client, bobs["access_token"])) == 2
    assert bob_browser.get("/account/sessions").status_code == 200


def test_ending_all_but_the_callers_own_grant(app, flow_clients, client):
    first_browser, second_browser = browser(app), browser(app, user_agent=PHONE)
    others = [password_grant(client) for _ in range(2)]
    mine = password_grant(client)
    bobs = password_grant(client, "bob", BOB_PASSWORD)

    response = client.delete("/localapi/sessions", headers=bearer(mine["access_token"]))

    assert response.status_code == 204
    assert [e["current"] for e in sessions_of(client, mine["access_token"])] == [True]
    for other in others:
        assert client.get("/localapi/account", headers=bearer(other["access_token"])).status_code == 401
        assert refresh(client, other["refresh_token"]).status_code == 400
    for signed_out in (first_browser, second_browser):
        assert signed_out.get("/account/sessions").status_code == 302
    assert client.get("/localapi/account", headers=bearer(mine["access_token"])).status_code == 200
    assert len(sessions_of(client, bobs["access_token"])) == 1  # another user's are untouched


def test_a_token_of_no_grant_ends_everything(app, flow_clients, client):
    """A token of no family (password grant without offline_access) has no entry of its own."""
    password_grant(client)
    response = client.post("/connect/token", data={"grant_type": "password", "username": "alice",
                                                   "password": ALICE_PASSWORD, "scope": "openid IdentityServerApi"},
                           headers={"Authorization": LEGACY_BASIC})
    token = response.get_json()["access_token"]
    assert [e["current"] for e in sessions_of(client, token)] == [False]
    assert client.delete("/localapi/sessions", headers=bearer(token)).status_code == 204
    assert sessions_of(client, token) == []


def test_the_hybrid_apps_grant_is_current_for_its_access_token(app, seeded, client):
    """A token issued on a code's redemption is found through the code's family."""
    AuthActions(client).login()
    tokens, _ = OAuthActions(client).code_flow("mobile", scope="openid IdentityServerApi offline_access",
                                               response_type="code id_token", nonce=secrets.token_urlsafe(8))
    body = tokens.get_json()
    entries = sessions_of(client, body["access_token"])
    assert [(e["kind"], e["current"]) for e in entries] == [("app", True), ("browser", False)]
    assert entries[0]["client_name"] == "Mobile App (hybrid)"


@pytest.mark.parametrize("method, path", [("get", "/localapi/sessions"), ("delete", "/localapi/sessions"),
                                          ("delete", "/localapi/sessions/app_x")])
def test_the_routes_need_a_token(app, seeded, client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    problem_of(response)


def test_the_openapi_document_describes_the_routes(app, flow_clients, client):
    token = password_grant(client)["access_token"]
    document = client.get("/localapi/openapi.json", headers=bearer(token)).get_json()
    assert set(document["paths"]["/localapi/sessions"]) == {"get", "delete"}
    assert set(document["paths"]["/localapi/sessions/{id}"]) == {"delete"}
    assert "404" in document["paths"]["/localapi/sessions/{id}"]["delete"]["responses"]
    session = document["components"]["schemas"]["Session"]
    assert {"id", "kind", "client_id", "client_name", "created_at", "last_used_at", "current"} <= set(session["required"])


# --- the page ----------------------------------------------------------------------------------


def page_entries(html: str) -> list[str]:
    return re.findall(r'data-entry="([^"]+)"', html)


def post_page(signed_in, **form):
    page = signed_in.get("/account/sessions")
    return signed_in.post("/account/sessions", data={"csrf_token": csrf_token(page.get_data(as_text=True)), **form})


def test_the_page_lists_this_browser_first_and_marks_it(app, flow_clients, client):
    browser(app, user_agent=PHONE)
    here = browser(app)
    password_grant(client)
    response = here.get("/account/sessions")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert len(page_entries(html)) == 3
    first = html.split('id="sessions"')[1].split("</li>")[0]
    assert 'data-current="true"' in first and "This browser" in first
    assert "Firefox on Linux" in html and "Chrome on Android" in html and "Legacy App" in html
    assert "203.0.113.0/24" in html
    for linked_from in ("/", "/account/grants"):
        assert 'href="/account/sessions"' in here.get(linked_from).get_data(as_text=True)


def test_the_page_needs_a_sign_in(app, seeded, client):
    response = client.get("/account/sessions")
    assert response.status_code == 302 and "/account/login" in response.headers["Location"]


def test_the_page_ends_one_entry(app, flow_clients, client):
    other = browser(app, user_agent=PHONE)
    here = browser(app)
    grant = password_grant(client)
    entries = page_entries(here.get("/account/sessions").get_data(as_text=True))
    app_entry = next(e for e in entries if e.startswith("app_"))

    response = post_page(here, entry=app_entry)

    assert response.status_code == 302 and response.headers["Location"].endswith("/account/sessions")
    assert refresh(client, grant["refresh_token"]).status_code == 400
    assert client.get("/localapi/account", headers=bearer(grant["access_token"])).status_code == 401
    assert other.get("/account/sessions").status_code == 200
    assert len(page_entries(here.get("/account/sessions").get_data(as_text=True))) == 2


def test_the_page_ends_all_others(app, flow_clients, client):
    other = browser(app, user_agent=PHONE)
    here = browser(app)
    grant = password_grant(client)

    response = post_page(here, scope="others")

    assert response.status_code == 302
    assert other.get("/account/sessions").status_code == 302
    assert refresh(client, grant["refresh_token"]).status_code == 400
    html = here.get("/account/sessions").get_data(as_text=True)
    assert len(page_entries(html)) == 1 and "signed in only here" in html


def test_the_page_refuses_a_post_without_its_csrf_token(app, flow_clients, client):
    browser(app, user_agent=PHONE)
    here = browser(app)
    response = here.post("/account/sessions", data={"scope": "others"})
    assert response.status_code == 400  # CSRFProtect, before the view
    assert len(page_entries(here.get("/account/sessions").get_data(as_text=True))) == 2


def test_ending_this_browsers_own_session_signs_it_out(app, flow_clients, client):
    here = browser(app)
    [mine] = page_entries(here.get("/account/sessions").get_data(as_text=True))
    response = post_page(here, entry=mine)
    assert response.status_code == 200 and "You are signed out." in response.get_data(as_text=True)
    assert here.get("/account/sessions").status_code == 302
    with app.app_context():
        [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "session_ended")).all()
        assert event.detail["reason"] == "ended_by_user"


def test_the_service_lists_nothing_for_a_user_without_sessions(app, seeded):
    with app.app_context():
        assert devices.list_entries(10**6) == []


@pytest.mark.parametrize("app_config", [limited(RATELIMIT_DEFAULT="2 per minute")])
def test_the_routes_have_the_local_apis_default_limit(app, seeded, client, api):
    token = api.token()
    for method, path, status in (("get", "/localapi/sessions", 200), ("delete", "/localapi/sessions", 204),
                                 ("delete", "/localapi/sessions/app_x", 404)):
        for _ in range(2):
            assert getattr(client, method)(path, headers=bearer(token)).status_code == status
        assert_rate_limited(getattr(client, method)(path, headers=bearer(token)))
