"""A stolen code sent again after what it issued ended (the user's password changed, `users
disable`, `sessions end USER`) is still a code replay: recorded (token_revoked,
authorization_code_replayed) and counted (identity_authorization_code_replays_total), the signal
operators alert on. Used codes are kept a day past their expiry for this; a change of the user's
password version in that day must not switch it off."""

import pytest
from sqlalchemy import select

from actions import OAuthActions
from identity.extensions import db
from identity.models import AuditEvent
from races import mobile_code
from test_change_window_review import _change_password
from test_docs_review import scraped_series
from test_localapi_support import CHEAP_ARGON2
from test_sessions_devices import browser


@pytest.fixture
def app_config():
    return dict(CHEAP_ARGON2)


@pytest.mark.parametrize("mover", [("users", "disable", "alice"), ("sessions", "end", "alice"), "password change"])
def test_a_used_code_sent_again_after_the_users_password_version_moved_is_a_replay(app, flow_clients, mover):
    here = browser(app)
    stolen = mobile_code(here, "openid offline_access")
    assert OAuthActions(app.test_client()).token("mobile-pkce", **stolen).status_code == 200
    recorded, counted = _code_replays(app)
    if mover == "password change":
        assert _change_password(here).status_code in (200, 302)
    else:
        result = app.test_cli_runner().invoke(args=list(mover))
        assert result.exit_code == 0, result.output

    again = OAuthActions(app.test_client()).token("mobile-pkce", **stolen)

    assert (again.status_code, again.get_json()["error"]) == (400, "invalid_grant")
    assert _code_replays(app) == (recorded + 1, counted + 1)


def _code_replays(app) -> tuple[int, float]:
    """The replays recorded in the audit log and counted in the metrics so far (mobile-pkce)."""
    with app.app_context():
        details = db.session.scalars(select(AuditEvent.detail).where(AuditEvent.event == "token_revoked")).all()
        db.session.rollback()
    recorded = sum(1 for detail in details if (detail or {}).get("reason") == "authorization_code_replayed")
    series = scraped_series(app.test_client().get("/metrics").get_data(as_text=True),
                            "identity_authorization_code_replays_total")
    return recorded, series.get('identity_authorization_code_replays_total{client_id="mobile-pkce"}', 0.0)
