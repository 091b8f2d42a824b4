"""Review from outside: each state-changing request of the local API and of the protocol
endpoints sent twice at once (two threads released by a barrier, against a 2-worker gunicorn
server) or twice in a row (a retry after the first succeeded), on SQLite and PostgreSQL: both
answers, the database and the audit trail say the change happened once."""

import pytest
import requests

from protocol_review_support import PASSWORD, SEED, SECRET, audited, password_tokens, scalar, twice
from servers import seeded_server, token_request

pytestmark = pytest.mark.server

ROUNDS = 3


@pytest.fixture
def server(tmp_path):
    with seeded_server(tmp_path, SEED, name="twice") as running:
        yield running


def test_a_password_change_sent_twice_at_once_is_one_change_and_no_wrong_password(server):
    """A mobile app's POST /localapi/password sent twice at once (a retry of a request whose answer
    was lost) with the same body and token: one 204; the other finds the password changed by the
    first, so its token is outdated (401 invalid_token, as it would be refused a moment later), not
    a "current password is incorrect" that counts toward lockout and is audited as a failure."""
    passwords = [PASSWORD] + [f"copper-lantern-orchard-{n}{n}7" for n in range(ROUNDS)]
    for round_ in range(ROUNDS):
        token = password_tokens(server, password=passwords[round_])["access_token"]
        failed = audited(server.database_uri, "password_change_failed")
        body = {"current_password": passwords[round_], "new_password": passwords[round_ + 1],
                "confirm_password": passwords[round_ + 1]}
        answers = twice(lambda: requests.post(server.url + "/localapi/password", json=body, timeout=60,
                                              headers={"Authorization": "Bearer " + token}))
        said = sorted((a.status_code, a.text[:120]) for a in answers)
        assert [a.status_code for a in answers].count(204) == 1, said
        other = next(a for a in answers if a.status_code != 204)
        assert other.status_code == 401, f"round {round_}: the second of one change twice answered {said}"
        assert 'error="invalid_token"' in other.headers["WWW-Authenticate"], other.headers
        assert audited(server.database_uri, "password_change_failed") == failed
        assert scalar(server.database_uri, "SELECT failed_attempts FROM users WHERE username = 'alice'") == 0
        assert audited(server.database_uri, "password_changed") == round_ + 1


@pytest.mark.parametrize("grant", ["password", "client_credentials"])
def test_an_access_token_revoked_twice_at_once_is_audited_once(server, grant):
    """RFC 7009: a client's revocation of one access token sent twice at once (an SDK's retry on a
    timeout): both 200, the token listed once, one token_revoked event; not one per request (on
    PostgreSQL both read it unlisted, and both recorded the revocation)."""
    uri = server.database_uri
    for round_ in range(ROUNDS * 2):
        if grant == "password":
            token = password_tokens(server)["access_token"]
        else:
            response = token_request(server.url, "twice", SECRET, grant_type="client_credentials", scope="IdentityServerApi")
            assert response.status_code == 200, response.text
            token = response.json()["access_token"]
        before = audited(uri, "token_revoked")
        answers = twice(lambda: requests.post(server.url + "/connect/revocation", auth=("twice", SECRET), timeout=60,
                                              data={"token": token, "token_type_hint": "access_token"}))
        assert [a.status_code for a in answers] == [200, 200], [(a.status_code, a.text) for a in answers]
        recorded = audited(uri, "token_revoked") - before
        assert recorded == 1, f"round {round_}: one access token revoked twice at once audited {recorded} times"
        assert requests.post(server.url + "/connect/revocation", auth=("twice", SECRET), timeout=60,
                             data={"token": token}).status_code == 200
        assert audited(uri, "token_revoked") - before == 1, "revoked again after: audited again"
        assert requests.get(server.url + "/localapi/account", headers={"Authorization": "Bearer " + token},
                            timeout=60).status_code == 401


def test_the_end_session_confirmation_sent_twice_at_once_shows_the_front_channel_iframes_in_both(tmp_path):
    """RP-initiated logout whose confirmation ("Yes, sign me out") is sent twice at once (a double
    click: the browser shows the answer to the last one): docs/logout.md promises that, with
    front-channel clients, the signed-out page is shown first so their iframes load. The request
    that lost the race to end the session answered a bare redirect to the client, and the
    client's front-channel logout page was never loaded. The back channel is told once, and the
    end recorded once."""
    from protocol_review_support import FRONTCHANNEL_SEED, RP_FRONTCHANNEL, RP_REDIRECT, RP_SIGNED_OUT
    from servers import authorize, csrf_from, sign_in

    with seeded_server(tmp_path, FRONTCHANNEL_SEED, name="frontchannel") as server:
        for round_ in range(ROUNDS):
            browser = requests.Session()
            assert sign_in(browser, server.url, "alice", PASSWORD).status_code == 302
            response, _ = authorize(browser, server.url, client_id="rp", redirect_uri=RP_REDIRECT)
            assert response.headers["Location"].startswith(RP_REDIRECT + "?code="), response.headers
            fields = {"client_id": "rp", "post_logout_redirect_uri": RP_SIGNED_OUT, "state": f"s{round_}"}
            page = browser.get(server.url + "/connect/endsession", params=fields, timeout=60)
            assert page.status_code == 200 and "csrf_token" in page.text, page.text[:300]
            form = {**fields, "csrf_token": csrf_from(page.text)}
            answers = twice(lambda: browser.post(server.url + "/connect/endsession", data=form, timeout=60,
                                                 allow_redirects=False))
            said = [(a.status_code, a.headers.get("Location"), RP_FRONTCHANNEL in a.text) for a in answers]
            assert all(a.status_code == 200 and RP_FRONTCHANNEL in a.text for a in answers), \
                f"round {round_}: the confirmation sent twice answered {said}"
            queued = scalar(server.database_uri, "SELECT count(*) FROM logout_deliveries")
            assert queued == round_ + 1, f"round {round_}: {queued} back-channel logout tokens for {round_ + 1} sign-outs"
            assert audited(server.database_uri, "session_ended") == round_ + 1


def test_consent_remembered_by_allow_clicked_twice_at_once_is_audited_once(tmp_path):
    """The consent form (Allow, remember) sent twice at once: both answers go back to the client
    with a code (test_races_review.py), one consent row is kept, and the audit trail records one
    consent_granted: the second request remembered nothing new. Sent again once the consent is
    remembered, nothing more is recorded either."""
    from protocol_review_support import CONSENT_SEED, RP_REDIRECT
    from servers import authorize, csrf_from, redirect_params, sign_in

    with seeded_server(tmp_path, CONSENT_SEED, name="consent") as server:
        uri = server.database_uri
        browser = requests.Session()
        assert sign_in(browser, server.url, "alice", PASSWORD).status_code == 302
        for round_ in range(ROUNDS):
            scope = ["openid", "openid profile", "openid profile email"][round_]
            response, _ = authorize(browser, server.url, client_id="asks", redirect_uri=RP_REDIRECT, scope=scope)
            assert response.status_code == 302 and response.headers["Location"].startswith("/consent?"), response.text
            location = server.url + response.headers["Location"]
            page = browser.get(location, timeout=60)
            form = {"csrf_token": csrf_from(page.text), "decision": "allow", "remember": "y"}
            before = audited(uri, "consent_granted")
            answers = twice(lambda: browser.post(location, data=form, timeout=60, allow_redirects=False))
            assert [a.status_code for a in answers] == [303, 303], [(a.status_code, a.text[:200]) for a in answers]
            assert all("code" in redirect_params(a) for a in answers), [a.headers.get("Location") for a in answers]
            recorded = audited(uri, "consent_granted") - before
            assert recorded == 1, f"round {round_}: one consent ({scope}) allowed twice at once audited {recorded} times"
            assert scalar(uri, "SELECT count(*) FROM consents") == 1
