"""A code's redemption and what ends the code meanwhile (a sign-out of the session that minted it,
`users remove` of its user), a millisecond apart: the redemption read the code, and the other
committed before the code was spent. The other is made to commit at that point (a hook on the
redemption's read of the code's user, tests/races.py's way), never by timing."""

from sqlalchemy import select

from actions import AuthActions, OAuthActions
from identity.extensions import db
from identity.models import AuditEvent, AuthorizationCode, RefreshToken
from identity.services import issued_grants
from races import mobile_code, other_workers


def test_a_code_redeemed_as_its_session_signs_out_issues_nothing(app, seeded, client, database_uri, monkeypatch):
    """alice signs in to the phone's app, then at once signs out in that browser (a shared
    computer), while the app redeems the code. The redemption had checked the code's session
    before the sign-out and not again: it issued tokens, a refresh token among them, naming a
    session that had ended, after the app's logout notice was queued. The app then held a grant
    of a signed-out session that no sign-out would end."""
    form = mobile_code(client, "openid offline_access")
    reading, signed_out = issued_grants.user_of_grant, []

    def signed_out_after_the_read(grant):
        if not signed_out:
            signed_out.append(AuthActions(client).logout())
        return reading(grant)

    monkeypatch.setattr(issued_grants, "user_of_grant", signed_out_after_the_read)
    with other_workers(database_uri) as (phone,):
        redeemed = OAuthActions(phone.test_client()).token("mobile-pkce", **form)
    assert signed_out and signed_out[0].status_code in (200, 302), signed_out
    body = redeemed.get_json()
    assert (redeemed.status_code, body.get("error"), "access_token" in body) == (400, "invalid_grant", False), body
    assert body["error_description"] == "the browser session that minted the code has ended"
    with app.app_context():
        code = db.session.scalar(select(AuthorizationCode).order_by(AuthorizationCode.id.desc()))
        assert code.consumed_at is not None and code.issued_jti is None  # spent, and nothing issued with it
        assert db.session.scalars(select(RefreshToken.id)).all() == []
        refused = db.session.scalars(select(AuditEvent.detail).where(AuditEvent.event == "authorization_code_refused")).all()
        assert [detail["description"] for detail in refused] == ["the browser session that minted the code has ended"]
        db.session.rollback()


def test_a_code_redeemed_as_its_user_is_removed_is_not_taken_for_a_replay(app, seeded, client, database_uri,
                                                                          monkeypatch):
    """An app redeems alice's code at the moment an operator runs `users remove alice`, whose
    removal committed after the redemption read the code and before it spent it. The redemption,
    finding no code to spend, took itself for a replay: it recorded a `token_revoked` event
    (reason `authorization_code_replayed`) for the removed user and counted a code replay, and
    told the app the code "was already used", which it never was."""
    from identity.services import accounts, metrics

    form = mobile_code(client, "openid offline_access")
    reading, removed = issued_grants.user_of_grant, []

    def removed_after_the_read(grant):
        if not removed:
            with other_workers(database_uri) as (operator,), operator.app_context():
                removed.append(accounts.remove_user("alice"))
        return reading(grant)

    monkeypatch.setattr(issued_grants, "user_of_grant", removed_after_the_read)
    replays = metrics.REGISTRY.get_sample_value("identity_authorization_code_replays_total",
                                                {"client_id": "mobile-pkce"}) or 0.0
    redeemed = OAuthActions(app.test_client()).token("mobile-pkce", **form)
    assert removed == [None]
    body = redeemed.get_json()
    assert (redeemed.status_code, body.get("error"), body.get("error_description")) == (
        400, "invalid_grant", "the authorization code is no longer valid"), body
    with app.app_context():
        revoked = db.session.scalars(select(AuditEvent.detail).where(AuditEvent.event == "token_revoked")).all()
        db.session.rollback()
    assert revoked == []
    assert (metrics.REGISTRY.get_sample_value("identity_authorization_code_replays_total",
                                              {"client_id": "mobile-pkce"}) or 0.0) == replays
