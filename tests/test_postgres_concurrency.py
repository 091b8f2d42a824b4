"""Races that SQLite hides (it runs one writer at a time), on PostgreSQL with real HTTP.

Two clients (or two threads of one) use the same single-use credential at the same moment:
exactly one may win, and a replayed refresh token revokes its whole family. Two password
changes at once must not lose an update; two seed runs at once must leave one row per item.

Each race is run a few rounds, each round released by a barrier, so that the requests really
overlap in the database (the live server answers each request in its own thread).
"""

import json
import os
import subprocess
import sys

import pytest
import requests
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from actions import OAuthActions
from conftest import postgresql_only
from identity.errors import AccountLocked, ValidationFailed
from identity.extensions import db
from identity.models import ApiScope, Client, RefreshToken, User
from identity.services import accounts
from identity.services.passwords import verify_password
from identity.services.seed import apply_seed, load_seed
from identity.services.tokens import token_hash
from races import in_thread, lock_waiters, mobile_code, other_workers, queued_behind_a_held_token, wait_until
from servers import ROOT, authorize, csrf_from, redirect_params, run_together, sign_in, token_request

DATABASE_URI = os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI", "")

pytestmark = postgresql_only()

ROUNDS = 4
PASSWORD = "tulip-quartz-harbor-917"
SECRET = "race-secret-0123456789"
REDIRECT_URI = "http://127.0.0.1:9/callback"
RACE_SEED = {
    "api_scopes": [{"name": "IdentityServerApi", "display_name": "Local API"}],
    "clients": [
        {
            # A confidential app with the code flow and refresh tokens.
            "client_id": "racer",
            "client_name": "Race Client",
            "client_secrets": [SECRET],
            "allowed_grant_types": ["authorization_code"],
            "redirect_uris": [REDIRECT_URI],
            "require_consent": False,
            "require_pkce": True,
            "allowed_scopes": ["openid", "profile", "offline_access", "IdentityServerApi"],
            "allow_offline_access": True,
        }
    ],
    "users": [{"username": "alice", "email": "alice@example.com", "password": PASSWORD, "name": "Alice Example"}],
}


@pytest.fixture
def race_seeded(app):
    with app.app_context():
        apply_seed(load_seed(json.dumps(RACE_SEED)))
    return RACE_SEED


def signed_in_browser(base: str) -> requests.Session:
    browser = requests.Session()
    response = sign_in(browser, base, "alice", PASSWORD)
    assert response.status_code == 302, response.text
    return browser


def fresh_code(browser: requests.Session, base: str, scope: str = "openid offline_access") -> tuple[str, str]:
    response, verifier = authorize(browser, base, client_id="racer", redirect_uri=REDIRECT_URI, scope=scope)
    assert response.status_code == 302, response.text
    assert response.headers["Location"].startswith(REDIRECT_URI), response.headers["Location"]
    params = redirect_params(response)
    assert "code" in params, params
    return params["code"], verifier


def redeem(base: str, code: str, verifier: str) -> requests.Response:
    return token_request(base, "racer", SECRET, grant_type="authorization_code", code=code,
                         redirect_uri=REDIRECT_URI, code_verifier=verifier)


def code_flow_tokens(browser: requests.Session, base: str) -> dict:
    """Authorization code + PKCE with offline_access: an access token and a refresh token."""
    code, verifier = fresh_code(browser, base)
    response = redeem(base, code, verifier)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "refresh_token" in body, body
    return body


def refresh(base_url: str, refresh_token: str) -> requests.Response:
    return token_request(base_url, "racer", SECRET, grant_type="refresh_token", refresh_token=refresh_token)


def introspect(base_url: str, token: str) -> dict:
    response = requests.post(base_url + "/connect/introspect", data={"token": token}, auth=("racer", SECRET), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def split_outcomes(responses: list) -> tuple[list, list]:
    for response in responses:
        if isinstance(response, BaseException):
            raise response
    winners = [r for r in responses if r.status_code == 200]
    losers = [r for r in responses if r.status_code != 200]
    return winners, losers


# --- refresh tokens --------------------------------------------------------------------------


def test_same_refresh_token_twice_at_once_one_wins_then_family_is_revoked(live_server, race_seeded):
    base = live_server.url
    browser = signed_in_browser(base)
    for round_ in range(ROUNDS):
        first = code_flow_tokens(browser, base)
        responses = run_together(lambda: refresh(base, first["refresh_token"]),
                                 lambda: refresh(base, first["refresh_token"]))
        winners, losers = split_outcomes(responses)
        assert len(winners) == 1, f"round {round_}: {[(r.status_code, r.text) for r in responses]}"
        assert losers[0].status_code == 400 and losers[0].json()["error"] == "invalid_grant", losers[0].text

        # The reuse revoked the family: the winner's new refresh token is refused, and the
        # access token issued with it is reported inactive.
        won = winners[0].json()
        again = refresh(base, won["refresh_token"])
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant", again.text
        assert introspect(base, won["refresh_token"]) == {"active": False}
        assert introspect(base, won["access_token"])["active"] is False


def test_refresh_race_leaves_no_live_token_in_the_family(app, live_server, race_seeded):
    base = live_server.url
    first = code_flow_tokens(signed_in_browser(base), base)
    run_together(lambda: refresh(base, first["refresh_token"]), lambda: refresh(base, first["refresh_token"]))
    with app.app_context():
        rows = db.session.scalars(select(RefreshToken)).all()
        families = {row.family_id for row in rows}
        assert len(families) == 1
        assert all(row.revoked_at is not None for row in rows), [(r.id, r.consumed_at, r.revoked_at) for r in rows]


# --- authorization codes ----------------------------------------------------------------------


# The tests' caches are off, so the session holds a transaction by the time a code is consumed;
# with the defaults' caches a code and its refresh token are one statement (store/issued_grants.py).
@pytest.mark.parametrize("app_config", [{}, {"CLIENT_CACHE_SECONDS": 5, "SIGNING_KEY_RELOAD_SECONDS": 5}],
                         ids=["in-the-session", "one-statement"])
def test_same_code_twice_at_once_exactly_one_succeeds(app, live_server, race_seeded, app_config):
    base = live_server.url
    browser = signed_in_browser(base)
    code_flow_tokens(browser, base)  # the client's snapshot and the signing keys, where cached
    for round_ in range(ROUNDS):
        code, verifier = fresh_code(browser, base)
        responses = run_together(lambda: redeem(base, code, verifier), lambda: redeem(base, code, verifier))
        winners, losers = split_outcomes(responses)
        assert len(winners) == 1, f"round {round_}: {[(r.status_code, r.text) for r in responses]}"
        assert losers[0].status_code == 400 and losers[0].json()["error"] == "invalid_grant", losers[0].text
        assert "access_token" in winners[0].json()
        # A third try, after the race, is refused too.
        assert redeem(base, code, verifier).status_code == 400
    with app.app_context():  # one refresh token a winner, and none for the losers
        assert db.session.scalar(select(func.count()).select_from(RefreshToken)) == ROUNDS + 1


def test_code_replayed_after_use_revokes_what_it_issued(live_server, race_seeded):
    """The replay of a code that was already redeemed revokes the tokens that redemption issued
    (RFC 6749 section 4.1.2); sequential, so the outcome does not depend on timing."""
    base = live_server.url
    browser = signed_in_browser(base)
    code, verifier = fresh_code(browser, base)
    first = redeem(base, code, verifier)
    assert first.status_code == 200, first.text
    tokens = first.json()
    assert redeem(base, code, verifier).status_code == 400
    assert introspect(base, tokens["access_token"])["active"] is False
    assert refresh(base, tokens["refresh_token"]).status_code == 400


# --- revocations met by other requests (races.py) ------------------------------------------------


def test_a_code_replayed_twice_at_once_is_refused_twice(app, seeded, client, database_uri, monkeypatch):
    """Each replay of a redeemed code revokes its family, the access token it issued included:
    two at once put the same jti on the revocation list, both before either commits. Neither
    may fail on the other's row (a 503): both are refused as invalid_grant."""
    from identity.store import tokens as token_rows

    form = mobile_code(client, "openid")
    assert OAuthActions(client).token("mobile-pkce", **form).status_code == 200
    listed, original = [], token_rows.add_revoked

    def add_revoked(jtis, expires_at):
        original(jtis, expires_at)
        listed.append(jtis)  # then on to the commit once the other has listed it too, or waits for this one
        wait_until(lambda: len(listed) == 2 or lock_waiters(app) > 0)

    monkeypatch.setattr(token_rows, "add_revoked", add_revoked)
    results = {}
    with other_workers(database_uri, 2) as workers:
        threads = [in_thread(results, i, lambda i=i: OAuthActions(workers[i].test_client()).token("mobile-pkce", **form))
                   for i in range(2)]
        for thread in threads:
            thread.join(30)
    assert len(listed) == 2 and listed[0] == listed[1]
    assert [results[i].status_code for i in range(2)] == [400, 400], [results[i].get_data(as_text=True) for i in range(2)]
    assert {results[i].get_json()["error"] for i in range(2)} == {"invalid_grant"}


def mobile_refresh(client, refresh_token: str):
    return OAuthActions(client).token("mobile-pkce", grant_type="refresh_token", refresh_token=refresh_token)


def mobile_tokens(client) -> dict:
    """Signed in as alice (the demo seed): mobile-pkce's tokens, a refresh token among them."""
    response = OAuthActions(client).token("mobile-pkce", **mobile_code(client, "openid offline_access"))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def refresh_token_id(app, refresh_token: str) -> int:
    with app.app_context():
        try:
            return db.session.scalar(select(RefreshToken.id).where(RefreshToken.token_hash == token_hash(refresh_token)))
        finally:
            db.session.remove()


def live_refresh_tokens(app) -> list:
    with app.app_context():
        try:
            return db.session.scalars(select(RefreshToken.id).where(RefreshToken.revoked_at.is_(None))).all()
        finally:
            db.session.remove()


def test_a_rotation_in_flight_when_its_family_is_revoked_leaves_no_live_token(app, seeded, client, database_uri):
    """A thief rotated a stolen refresh token (T to A1); the rightful client presents T, which
    revokes the family, while the thief's next rotation (A1 to A2) is in flight. The revocation
    waits for A1's row and revokes it, and A2 as well, which it could not see when it began."""
    first = mobile_tokens(client)
    a1 = mobile_refresh(client, first["refresh_token"]).get_json()["refresh_token"]
    with other_workers(database_uri) as (other,):  # the rightful client's request: another worker
        results = queued_behind_a_held_token(app, refresh_token_id(app, a1),
                                             lambda: mobile_refresh(app.test_client(), a1),
                                             lambda: mobile_refresh(other.test_client(), first["refresh_token"]))
    assert results["second"].status_code == 400  # the reuse of T
    assert results["first"].status_code == 200, results["first"].get_data(as_text=True)
    assert live_refresh_tokens(app) == []
    assert mobile_refresh(client, results["first"].get_json()["refresh_token"]).status_code == 400


def test_a_rotation_in_flight_when_the_user_is_disabled_leaves_no_live_token(app, seeded, client, database_uri):
    from identity.services import user_status

    tokens = mobile_tokens(client)
    with other_workers(database_uri) as (other,):  # the operator's command
        def disable():
            with other.app_context():
                try:
                    return user_status.disable_user("alice").changed
                finally:
                    db.session.remove()

        results = queued_behind_a_held_token(app, refresh_token_id(app, tokens["refresh_token"]),
                                             lambda: mobile_refresh(app.test_client(), tokens["refresh_token"]), disable)
    assert results["second"] is True
    assert results["first"].status_code == 200, results["first"].get_data(as_text=True)
    assert live_refresh_tokens(app) == []
    assert mobile_refresh(client, results["first"].get_json()["refresh_token"]).status_code == 400


def test_a_rotation_in_flight_when_the_app_is_revoked_leaves_no_live_token(app, seeded, client, database_uri):
    """The user revokes the app on the grants page while the app's rotation is in flight."""
    from identity.services import consent

    tokens = mobile_tokens(client)
    with app.app_context():
        alice_id = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.remove()
    with other_workers(database_uri) as (other,):
        def revoke_app():
            with other.test_request_context():
                try:
                    return consent.revoke_grant(alice_id, "mobile-pkce")
                finally:
                    db.session.remove()

        results = queued_behind_a_held_token(app, refresh_token_id(app, tokens["refresh_token"]),
                                             lambda: mobile_refresh(app.test_client(), tokens["refresh_token"]),
                                             revoke_app)
    assert results["second"] is None
    assert results["first"].status_code == 200, results["first"].get_data(as_text=True)
    assert live_refresh_tokens(app) == []
    assert mobile_refresh(client, results["first"].get_json()["refresh_token"]).status_code == 400


def _change_password(user_id: int) -> None:
    accounts.change_password(user_id, PASSWORD, "lantern-orchid-velvet-204", "lantern-orchid-velvet-204")


def _reset_password(user_id: int) -> None:
    from identity.services import account_tokens, recovery

    email = db.session.get(User, user_id).email  # a link works only for the address it was mailed to
    link = account_tokens.issue(user_id, recovery.PURPOSE, 3600, email=email)
    db.session.commit()
    recovery.reset_password(link, "lantern-orchid-velvet-204", "lantern-orchid-velvet-204")


@pytest.mark.parametrize("replace", [_change_password, _reset_password], ids=["change", "reset"])
def test_a_password_change_and_a_rotation_at_once_do_not_deadlock(app, seeded, client, database_uri, replace):
    """A password change (or reset) locks the user's row from before its hashes until it commits,
    and revokes the user's refresh tokens, waiting for a rotation in flight; the rotation's new
    token refers to the user (a foreign key, which takes KEY SHARE on the user's row). The
    change's lock must not hold that off, or each waits for the other until PostgreSQL aborts one."""
    tokens = mobile_tokens(client)
    with app.app_context():
        alice_id = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.remove()
    with other_workers(database_uri) as (other,):  # the password change's worker
        def change():
            with other.test_request_context():
                try:
                    return replace(alice_id)
                finally:
                    db.session.remove()

        results = queued_behind_a_held_token(app, refresh_token_id(app, tokens["refresh_token"]),
                                             lambda: mobile_refresh(app.test_client(), tokens["refresh_token"]), change)
    assert not isinstance(results["second"], BaseException), repr(results["second"])
    assert results["first"].status_code == 200, results["first"].get_data(as_text=True)
    assert live_refresh_tokens(app) == []
    with app.app_context():
        assert verify_password(db.session.get(User, alice_id).password_hash, "lantern-orchid-velvet-204")


# --- password changes ----------------------------------------------------------------------------


def test_password_changes_in_sequence_under_load_each_count(app, race_seeded):
    """A chain A->B and B->C started together: whichever order the database picks, the version
    counts every change that succeeded, and the hash is that of the last one."""
    chain = [PASSWORD, "copper-lantern-meadow-582", "violet-anchor-summit-931"]
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "alice"))
        user_id, version_before = user.id, user.password_version

    def change(current, new):
        def call():
            with app.app_context():
                try:
                    accounts.change_password(user_id, current, new, new)
                    return new
                except (ValidationFailed, AccountLocked):
                    return None
                finally:
                    db.session.remove()
        return call

    outcomes = run_together(change(chain[0], chain[1]), change(chain[1], chain[2]))
    succeeded = [o for o in outcomes if isinstance(o, str)]
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    assert succeeded, outcomes
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user.password_version == version_before + len(succeeded)
        final = chain[2] if chain[2] in succeeded else chain[1]
        assert verify_password(user.password_hash, final)


def user_state(app) -> tuple[int, str]:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "alice"))
        try:
            return user.password_version, user.password_hash
        finally:
            db.session.remove()


def assert_one_change_won(app, version_before: int, winner: str, loser: str) -> None:
    version, password_hash = user_state(app)
    assert version == version_before + 1, "two changes from the same current password both counted"
    with app.app_context():
        assert verify_password(password_hash, winner)
        assert not verify_password(password_hash, loser)


def test_two_local_api_password_changes_at_once(app, live_server, race_seeded):
    """Two devices of the same user POST /localapi/password at once with the same current
    password: one 204; the other is refused (its current password is no longer right, or its
    token is already outdated), never a second 204 that overwrites the first."""
    base = live_server.url
    browser = signed_in_browser(base)
    tokens = []
    for _ in range(2):
        code, verifier = fresh_code(browser, base, scope="openid IdentityServerApi")
        response = redeem(base, code, verifier)
        assert response.status_code == 200, response.text
        tokens.append(response.json()["access_token"])
    version_before, _ = user_state(app)
    new_passwords = ["copper-lantern-meadow-582", "violet-anchor-summit-931"]

    def change(token, new_password):
        return lambda: requests.post(
            base + "/localapi/password", headers={"Authorization": f"Bearer {token}"}, timeout=30,
            json={"current_password": PASSWORD, "new_password": new_password, "confirm_password": new_password})

    responses = run_together(change(tokens[0], new_passwords[0]), change(tokens[1], new_passwords[1]))
    for response in responses:
        if isinstance(response, BaseException):
            raise response
    statuses = [r.status_code for r in responses]
    assert statuses.count(204) == 1, [(r.status_code, r.text) for r in responses]
    loser = responses[1 - statuses.index(204)]
    assert loser.status_code in (400, 401), loser.text
    if loser.status_code == 400:
        assert "current_password" in loser.json()["errors"], loser.text
    winner_index = statuses.index(204)
    assert_one_change_won(app, version_before, new_passwords[winner_index], new_passwords[1 - winner_index])


def test_two_password_pages_submitted_at_once(app, live_server, race_seeded):
    """The same user, signed in in two browsers, submits /account/password in both at once."""
    base = live_server.url
    browsers = [signed_in_browser(base), signed_in_browser(base)]
    csrf = []
    for browser in browsers:
        page = browser.get(base + "/account/password", timeout=30)
        assert page.status_code == 200, page.text
        csrf.append(csrf_from(page.text))
    version_before, _ = user_state(app)
    new_passwords = ["copper-lantern-meadow-582", "violet-anchor-summit-931"]

    def submit(i):
        return lambda: browsers[i].post(base + "/account/password", timeout=30, allow_redirects=False, data={
            "csrf_token": csrf[i], "current_password": PASSWORD,
            "new_password": new_passwords[i], "confirm_password": new_passwords[i]})

    responses = run_together(submit(0), submit(1))
    for response in responses:
        if isinstance(response, BaseException):
            raise response
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 1, [(r.status_code, r.text[:300]) for r in responses]
    winner_index = statuses.index(200)
    # The other: 400 (current password no longer right) or sent to sign in (its session was revoked).
    assert statuses[1 - winner_index] in (302, 400), statuses
    assert_one_change_won(app, version_before, new_passwords[winner_index], new_passwords[1 - winner_index])


# --- seeding ------------------------------------------------------------------------------------------


def assert_one_row_each(app, seed: dict) -> None:
    with app.app_context():
        for item in seed["clients"]:
            assert db.session.scalar(select(func.count()).select_from(Client).where(Client.client_id == item["client_id"])) == 1
        for item in seed["users"]:
            assert db.session.scalar(select(func.count()).select_from(User).where(User.username == item["username"])) == 1
        for item in seed["api_scopes"]:
            assert db.session.scalar(select(func.count()).select_from(ApiScope).where(ApiScope.name == item["name"])) == 1


def test_two_seed_runs_at_once_in_threads(app):
    """Both apply the same seed; one may lose the race for a unique row (IntegrityError) and then
    retries, as the CLI does. Either way the end state is one row per client, user and scope."""
    seed_text = (ROOT / "demo" / "seed.json").read_text()
    seed = json.loads(seed_text)

    def seed_once():
        with app.app_context():
            try:
                data = load_seed(seed_text)
                try:
                    return apply_seed(data), False
                except IntegrityError:
                    return apply_seed(data), True
            finally:
                db.session.remove()

    outcomes = run_together(seed_once, seed_once)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    assert_one_row_each(app, seed)
    with app.app_context():
        assert not apply_seed(load_seed(seed_text)).changed, "a third run after the race should change nothing"


def test_two_seed_commands_at_once(app, database_uri):
    """Two operators (or two instances starting) run `flask seed` at the same moment: both exit 0."""
    seed_path = ROOT / "demo" / "seed.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    env.update(FLASK_SQLALCHEMY_DATABASE_URI=database_uri, FLASK_SECRET_KEY="seed-race-secret",
               FLASK_ENVIRONMENT="development")

    def run_seed():
        return subprocess.run([sys.executable, "-m", "flask", "--app", "app", "seed", str(seed_path)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    results = run_together(run_seed, run_seed)
    for result in results:
        if isinstance(result, BaseException):
            raise result
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert_one_row_each(app, json.loads(seed_path.read_text()))
