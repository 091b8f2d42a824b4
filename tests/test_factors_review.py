"""Second factors and passkeys where they meet the protocol: the password and refresh grants of a
client that requires a second factor, and what the tokens then say."""

import pytest
from sqlalchemy import update

from actions import OAuthActions
from conftest import ALICE_PASSWORD
from identity.extensions import db
from identity.models import Client
from mfa_actions import claims, step_clock  # noqa: F401


@pytest.fixture(autouse=True)
def _clock(step_clock):
    return step_clock


def _require_mfa(app, client_id: str) -> None:
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == client_id).values(require_mfa=True))
        db.session.commit()


def test_the_password_grant_of_a_client_that_requires_mfa_issues_nothing(client, app, flow_clients):
    """require_mfa: the client's users sign in with a second factor; the password grant has no
    second step, so it can issue nothing to such a client, even for a user without a factor."""
    _require_mfa(app, "legacy")
    response = OAuthActions(client).token("legacy", grant_type="password", username="alice",
                                          password=ALICE_PASSWORD, scope="openid offline_access")
    assert response.status_code == 400, claims(response.get_json()["access_token"])
    body = response.get_json()
    assert "access_token" not in body and body["error"] == "unauthorized_client"
    assert "second factor" in body["error_description"]
