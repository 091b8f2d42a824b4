"""Review: tidy-ups of tested code that must change no answer. A code redemption that lost reads
its code's state once (store.code_state) and answers each case as before; the one case no other
test reached, a true replay, is pinned here."""

from sqlalchemy import select

from actions import OAuthActions
from identity.extensions import db
from identity.models import AuditEvent, RefreshToken
from identity.services import issued_grants
from races import mobile_code, other_workers


def test_a_code_redeemed_twice_at_once_revokes_what_the_winner_was_issued(app, seeded, client, database_uri,
                                                                         monkeypatch):
    """Two requests redeem one code: the other commits after this one read the code and before it
    spent it. The loser is the replay the code's single use is for: refused, and the winner's
    grant revoked (its refresh token, with a `token_revoked` event), as RFC 6749 section 4.1.2
    asks. Of a lost redemption's answers, the one no other test reached."""
    form = mobile_code(client, "openid offline_access")
    reading, winner = issued_grants.user_of_grant, []

    def redeemed_by_another_after_the_read(grant):
        if not winner:
            winner.append(None)  # the other's own read comes through here too
            with other_workers(database_uri) as (other,):
                winner[0] = OAuthActions(other.test_client()).token("mobile-pkce", **form)
        return reading(grant)

    monkeypatch.setattr(issued_grants, "user_of_grant", redeemed_by_another_after_the_read)
    lost = OAuthActions(app.test_client()).token("mobile-pkce", **form)
    assert winner[0].status_code == 200 and "refresh_token" in winner[0].get_json(), winner[0].get_json()
    body = lost.get_json()
    assert (lost.status_code, body.get("error"), body.get("error_description")) == (
        400, "invalid_grant", "authorization code was already used"), body
    with app.app_context():
        assert [token.revoked_at is not None for token in db.session.scalars(select(RefreshToken))] == [True]
        revoked = db.session.scalars(select(AuditEvent.detail).where(AuditEvent.event == "token_revoked")).all()
        db.session.rollback()
    assert [detail["reason"] for detail in revoked] == ["authorization_code_replayed"]
