"""Review: every credential against every event that must end it. The credentials this server
hands out or keeps pending (a browser session, an unredeemed code, a refresh token, an access
token, a reset or verification link, a pending address change or enrolment, a remembered
consent) are put, one by one, against the events that must end them or spare them (a password
change, `users disable`, `sessions end`, a sign-out, a client changed or removed, a grant
revoked, ...), the credential used at once after the event, and while it runs where the two can
meet (tests/races.py: the other request is made at a chosen statement, never by timing)."""

import json

from sqlalchemy import select

from actions import OAuthActions
from identity.extensions import db
from identity.models import RefreshToken, User
from races import amid_the_first, mobile_code, other_workers


def test_sessions_end_also_ends_a_grant_whose_code_was_redeemed_while_it_ran(app, seeded, runner, client,
                                                                              database_uri):
    """An operator signs a user out everywhere (`sessions end alice`, a stolen phone) while the
    phone's app redeems a code its browser session had just minted: the command listed the
    user's entries, then ended them, and the grant the code started in between was in no entry.
    The command said it had ended everything, and yet `sessions list` still showed the app grant
    and its refresh token kept working."""
    form = mobile_code(client, "openid offline_access")
    redeemed = {}

    def redeem():  # the app, on another worker, right after the command has listed the entries
        with other_workers(database_uri) as (other,):
            redeemed["response"] = OAuthActions(other.test_client()).token("mobile-pkce", **form)

    with app.app_context(), amid_the_first("FROM refresh_tokens", redeem) as ran:
        result = runner.invoke(args=["sessions", "end", "alice"])
    assert ran and result.exit_code == 0, result.output
    assert redeemed["response"].status_code == 200, redeemed["response"].get_json()
    refresh_token = redeemed["response"].get_json()["refresh_token"]

    listed = runner.invoke(args=["sessions", "list", "alice", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.output) == [], listed.output
    refreshed = OAuthActions(client).token("mobile-pkce", grant_type="refresh_token", refresh_token=refresh_token)
    assert refreshed.status_code == 400 and refreshed.get_json()["error"] == "invalid_grant", refreshed.get_json()
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        live = db.session.scalars(select(RefreshToken.id).where(RefreshToken.user_id == alice,
                                                                RefreshToken.revoked_at.is_(None),
                                                                RefreshToken.consumed_at.is_(None))).all()
        assert live == []
