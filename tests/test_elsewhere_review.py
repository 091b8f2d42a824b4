"""Review: "all but this one" against what begins while it runs. "Sign out everywhere else" (the
page) and `DELETE /localapi/sessions` list the user's entries and then end them one by one, each
in its own transaction, keeping the current one (this browser's session, the calling app's
grant): a grant that another of the user's requests starts in between (the phone's app
redeeming a code its browser session minted, on another worker) is made to meet the call right
after its listing (a wrapped service call, never timing), and what is left afterwards is
checked: the current entry and its rotations, and nothing that the call should have ended."""

import pytest
from sqlalchemy import select

from actions import OAuthActions
from conftest import HttpsClient, csrf_token
from identity.extensions import db
from identity.models import RefreshToken, User
from identity.services import devices
from races import mobile_code, other_workers
from test_localapi_support import CHEAP_ARGON2, bearer
from test_sessions_devices import browser, page_entries, password_grant, refresh, sessions_of


@pytest.fixture
def app_config():
    return dict(CHEAP_ARGON2)


def redeemed_right_after_the_listing(monkeypatch, database_uri, form: dict) -> dict:
    """When the next request lists the user's entries (devices.list_entries), right after the
    listing the phone's app redeems its code (`form`, races.mobile_code's) on another worker and
    commits: the token response it got, as "response"."""
    listed, redeemed = devices.list_entries, {}

    def listing_then_redemption(*args, **kwargs):
        entries = listed(*args, **kwargs)
        if not redeemed:
            with other_workers(database_uri) as (other,):
                redeemed["response"] = OAuthActions(other.test_client()).token("mobile-pkce", **form)
        return entries

    monkeypatch.setattr(devices, "list_entries", listing_then_redemption)
    return redeemed


def new_browser(app):
    """A browser not signed in yet, with its own cookie jar."""
    app.test_client_class = HttpsClient
    return app.test_client()


def live_families(app, username: str = "alice") -> set[str]:
    """The families of the user's usable refresh tokens, as committed."""
    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == username))
        families = set(db.session.scalars(select(RefreshToken.family_id).where(
            RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None), RefreshToken.consumed_at.is_(None))))
        db.session.rollback()
    return families


def redeemed_tokens(redeemed: dict) -> dict:
    response = redeemed["response"]
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_sign_out_everywhere_else_also_ends_a_grant_whose_code_was_redeemed_while_it_ran(
        app, flow_clients, client, monkeypatch, database_uri):
    """On the page, "Sign out everywhere else" as the phone's app redeems a code the phone's
    browser session had just minted: the page listed the entries, then ended them, and the grant
    the code started in between was in none of them. The phone's browser was signed out, yet the
    page still showed the phone's app, and its refresh token kept working."""
    phone = new_browser(app)
    form = mobile_code(phone, "openid offline_access")
    here = browser(app)
    page = here.get("/account/sessions").get_data(as_text=True)
    this_browser = page_entries(page)[0]
    redeemed = redeemed_right_after_the_listing(monkeypatch, database_uri, form)

    response = here.post("/account/sessions", data={"csrf_token": csrf_token(page), "scope": "others"})

    assert response.status_code == 302
    tokens = redeemed_tokens(redeemed)
    left = page_entries(here.get("/account/sessions").get_data(as_text=True))
    assert left == [this_browser], left
    refreshed = OAuthActions(client).token("mobile-pkce", grant_type="refresh_token",
                                           refresh_token=tokens["refresh_token"])
    assert refreshed.status_code == 400 and refreshed.get_json()["error"] == "invalid_grant", refreshed.get_json()
    assert live_families(app) == set()
    assert phone.get("/account/sessions").status_code == 302


def test_the_local_apis_end_all_but_mine_also_ends_a_grant_whose_code_was_redeemed_while_it_ran(
        app, flow_clients, client, monkeypatch, database_uri):
    """`DELETE /localapi/sessions` from an app as the phone's app redeems a code the phone's
    browser session had just minted: the API answered 204, and yet the grant the code started
    while it ran was still listed and its refresh token kept working, beside the caller's own."""
    phone = new_browser(app)
    form = mobile_code(phone, "openid offline_access")
    mine = password_grant(client)
    [my_family] = live_families(app)
    redeemed = redeemed_right_after_the_listing(monkeypatch, database_uri, form)

    response = client.delete("/localapi/sessions", headers=bearer(mine["access_token"]))

    assert response.status_code == 204
    tokens = redeemed_tokens(redeemed)
    left = [(e["id"], e["client_id"], e["current"]) for e in sessions_of(client, mine["access_token"])]
    assert left == [(f"app_{my_family}", "legacy", True)], left
    refreshed = OAuthActions(client).token("mobile-pkce", grant_type="refresh_token",
                                           refresh_token=tokens["refresh_token"])
    assert refreshed.status_code == 400 and refreshed.get_json()["error"] == "invalid_grant", refreshed.get_json()
    assert live_families(app) == {my_family}
    assert refresh(client, mine["refresh_token"]).status_code == 200  # the caller's grant, and its rotation, kept
    assert phone.get("/account/sessions").status_code == 302
