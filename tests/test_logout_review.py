"""Review of sign-out and sessions: the remember-me cookie at sign-out, a browser where another
person signs in over a session, and the end-session endpoint's edge cases."""

from sqlalchemy import select

from actions import AuthActions, OAuthActions, redirect_params
from conftest import BOB_PASSWORD
from identity.extensions import db
from identity.models import LogoutDelivery, User, UserSession


def whoami(client) -> str | None:
    """The user name the browser is signed in as (the diagnostics page), or None."""
    response = client.get("/diagnostics")
    assert response.status_code in (200, 302)
    if response.status_code == 302:
        return None
    return "bob" if "bob@example.com" in response.get_data(as_text=True) else "alice"


def remember_cookies(app, response) -> list[str]:
    return [h for h in response.headers.getlist("Set-Cookie") if h.startswith(app.config["REMEMBER_COOKIE_NAME"] + "=")]


def test_sign_out_deletes_the_remember_me_cookie(app, client, flow_clients):
    AuthActions(client).login(remember=True)
    response = AuthActions(client).logout()
    assert response.status_code == 200
    (cookie,) = remember_cookies(app, response)
    assert "Expires=Thu, 01 Jan 1970" in cookie


def test_sign_out_after_another_user_signed_in_does_not_bring_back_the_first(app, client, flow_clients):
    AuthActions(client).login(remember=True)  # alice, remembered, on a shared browser
    assert whoami(client) == "alice"
    assert AuthActions(client).login("bob", BOB_PASSWORD).status_code == 302  # bob signs in over it
    assert whoami(client) == "bob"
    assert AuthActions(client).logout().status_code == 200
    assert whoami(client) is None
