"""The upgrade path: databases an older release wrote, upgraded to head, and the grants they hold
listed and ended as before (store/refresh_families.py reads a user's families through
(user_id, family_id) and each family's newest token through (family_id, issued_at))."""

import base64

from sqlalchemy import func, select, update

from actions import OAuthActions
from conftest import BOB_PASSWORD, FLOW_SECRETS
from identity.extensions import db
from identity.models import RefreshToken


def basic(client_id: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def password_grant(client) -> dict:
    response = client.post("/connect/token", data={
        "grant_type": "password", "username": "bob", "password": BOB_PASSWORD,
        "scope": "openid IdentityServerApi offline_access"}, headers=basic("legacy", FLOW_SECRETS["legacy"]))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def refresh(client, refresh_token: str):
    return OAuthActions(client).token("legacy", grant_type="refresh_token", refresh_token=refresh_token)


def rotate(client, grant: dict) -> dict:
    response = refresh(client, grant["refresh_token"])
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def family_of(app) -> list[str]:
    with app.app_context():
        return db.session.scalars(select(RefreshToken.family_id).group_by(RefreshToken.family_id)
                                  .order_by(func.min(RefreshToken.id))).all()


def listed_apps(client, grant: dict) -> list[str]:
    response = client.get("/localapi/sessions", headers={"Authorization": "Bearer " + grant["access_token"]})
    assert response.status_code == 200, response.get_data(as_text=True)
    return [entry["id"] for entry in response.get_json() if entry["id"].startswith("app_")]


def test_a_grant_rotated_by_an_instance_whose_clock_is_behind_is_listed_and_ended(app, client, flow_clients):
    """Two instances on one database (or one whose clock NTP steps back): a refresh token issued
    by the one whose clock is ahead is rotated by the other, so its successor, the family's only
    live token, has the smaller issued_at. The listings take a family's newest token by issued_at
    (refresh_families): that one was consumed, so the live grant was listed nowhere, and ending
    every other session (DELETE /localapi/sessions, the sessions page's "sign out everywhere")
    left it working. A successor is never issued before the token it replaces."""
    skewed = password_grant(client)
    caller = password_grant(client)
    skewed_family, caller_family = family_of(app)
    with app.app_context():  # written by an instance whose clock is 5 seconds ahead of this one's
        db.session.execute(update(RefreshToken).where(RefreshToken.family_id == skewed_family)
                           .values(issued_at=RefreshToken.issued_at + 5))
        db.session.commit()
    skewed = rotate(client, skewed)

    assert set(listed_apps(client, caller)) == {"app_" + skewed_family, "app_" + caller_family}
    assert listed_apps(client, skewed)[0] == "app_" + skewed_family  # the caller's own, first
    assert client.delete("/localapi/sessions", headers={"Authorization": "Bearer " + caller["access_token"]}
                         ).status_code == 204
    assert refresh(client, skewed["refresh_token"]).status_code == 400  # ended with the others
    assert listed_apps(client, caller) == ["app_" + caller_family]
