"""What a newcomer's browser sees first: the icon, a readable sign-in time on the diagnostics
page, and a change-password form that password managers can pair with the account."""

import re
from datetime import datetime, timezone

from sqlalchemy import select

from actions import AuthActions
from conftest import csrf_token
from identity.extensions import db
from identity.models import User, UserSession
from identity.services.passwords import verify_password

NEW_PASSWORD = "copper-lantern-orchard-731"


# --- the icon ----------------------------------------------------------------------------


def test_favicon_ico_is_an_icon_that_may_be_cached(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 200
    assert response.mimetype == "image/x-icon"
    assert response.data[:4] == b"\x00\x00\x01\x00", "an ICO file starts with reserved 0, type 1"
    assert response.cache_control.max_age >= 3600 and not response.cache_control.no_store


def test_favicon_ico_answers_head_and_conditional_requests(client):
    first = client.get("/favicon.ico")

    assert client.head("/favicon.ico").status_code == 200
    again = client.get("/favicon.ico", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304


def test_pages_link_the_icons(client):
    html = client.get("/").get_data(as_text=True)

    assert re.search(r'<link rel="icon" href="/favicon.ico"', html)
    svg_href = re.search(r'<link rel="icon" href="([^"]+favicon.svg[^"]*)" type="image/svg\+xml"', html).group(1)
    svg = client.get(svg_href)
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml" and b"<svg" in svg.data


# --- diagnostics --------------------------------------------------------------------------


def test_diagnostics_shows_auth_time_as_iso_8601_utc_and_keeps_the_epoch(client, app, seeded):
    assert AuthActions(client).login().status_code == 302
    with app.app_context():
        epoch = db.session.scalar(select(UserSession.auth_time))
    iso = datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    html = client.get("/diagnostics").get_data(as_text=True)

    claim_row = re.search(r"<code>auth_time</code></th>\s*<td>(.*?)</td>", html, re.DOTALL).group(1)
    assert f'<time datetime="{iso}" data-epoch="{epoch}"' in claim_row
    assert f">{iso}</time>" in claim_row
    assert f'<time datetime="{iso}">{iso}</time>' in html  # "Signed in at"
    assert not re.search(rf">\s*{epoch}\s*<", html), "the raw epoch is no longer the text people read"


# --- the change-password form ---------------------------------------------------------------


def _username_input(html: str) -> str:
    inputs = [tag for tag in re.findall(r"<input\b[^>]*>", html) if 'autocomplete="username"' in tag]
    assert len(inputs) == 1, inputs
    return inputs[0]


def test_password_page_names_the_account_for_password_managers(client, seeded):
    AuthActions(client).login()

    html = client.get("/account/password").get_data(as_text=True)

    field = _username_input(html)
    assert 'value="alice"' in field and "readonly" in field
    assert "name=" not in field, "never posted: the server needs no user name here"
    assert 'class="visually-hidden"' in field and 'aria-hidden="true"' in field and 'tabindex="-1"' in field
    form = re.search(r'<form class="form" method="post">(.*?)</form>', html, re.DOTALL).group(1)
    assert field in form and form.index(field) < form.index('autocomplete="new-password"')


def test_the_form_still_changes_the_password(client, app, seeded):
    AuthActions(client).login()
    page = client.get("/account/password").get_data(as_text=True)

    response = client.post("/account/password", data={
        "csrf_token": csrf_token(page), "current_password": seeded["users"][0]["password"],
        "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})

    assert response.status_code == 200, response.get_data(as_text=True)
    assert "Your password was changed" in response.get_data(as_text=True)
    with app.app_context():
        alice = db.session.scalar(select(User).where(User.username == "alice"))
        assert verify_password(alice.password_hash, NEW_PASSWORD)
