"""`flask seed FILE`: creates everything, idempotent, all or nothing, hashes only."""

import copy
import json
import re

import pytest
from sqlalchemy import delete, select

from conftest import PRODUCTION_ARGON2
from identity.extensions import db
from identity.models import ApiScope, AuditEvent, Client, IdentityResource, User
from identity.services import accounts
from identity.services.client_secrets import verify_client_secret
from identity.services.passwords import verify_password

ALICE_PASSWORD = "tulip-quartz-harbor-917"
MOBILE_SECRET = "s3cret"
SERVICE_SECRET = "service-secret-change-me"
USERS_OWN_PASSWORD = "lantern-orchid-meadow-5531"

SEED = {
    "api_scopes": [
        {"name": "IdentityServerApi", "display_name": "Local API"},
        {"name": "orders", "display_name": "Orders API"},
    ],
    "clients": [
        {
            "client_id": "mobile",
            "client_name": "Mobile Apps",
            "client_secrets": [MOBILE_SECRET],
            "allowed_grant_types": ["hybrid"],
            "redirect_uris": ["com.example.app:/callback"],
            "post_logout_redirect_uris": ["com.example.app:/signout"],
            "require_consent": False,
            "require_pkce": True,
            "allowed_cors_origins": [],
            "allowed_scopes": ["openid", "profile", "email", "IdentityServerApi"],
            "allow_offline_access": True,
            "allow_access_tokens_via_browser": True,
            "access_token_lifetime": 3600,
        },
        {
            "client_id": "spa",
            "allowed_grant_types": ["authorization_code"],
            "redirect_uris": ["https://spa.example.com/callback"],
            "allowed_cors_origins": ["https://spa.example.com"],
            "allowed_scopes": ["openid", "orders"],
        },
        {
            "client_id": "service",
            "client_secrets": [SERVICE_SECRET],
            "allowed_grant_types": ["client_credentials"],
            "allowed_scopes": ["orders"],
        },
    ],
    "users": [
        {"username": "alice", "email": "alice@example.com", "password": ALICE_PASSWORD, "name": "Alice Example"},
    ],
}


def seed_doc(**changes) -> dict:
    doc = copy.deepcopy(SEED)
    doc.update(changes)
    return doc


def write(tmp_path, content) -> str:
    path = tmp_path / "seed.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def seed(runner, tmp_path, content):
    return runner.invoke(args=["seed", write(tmp_path, content)])


def snapshot(app) -> dict[str, list[tuple]]:
    """Every row of every table, as comparable tuples."""
    with app.app_context():
        out = {}
        for table in db.metadata.sorted_tables:
            rows = db.session.execute(select(table)).all()
            out[table.name] = sorted(tuple(json.dumps(v, sort_keys=True) for v in row) for row in rows)
        db.session.remove()
        return out


def row_counts(app) -> dict[str, int]:
    return {name: len(rows) for name, rows in snapshot(app).items()}


# --- creating ---------------------------------------------------------------------


def test_seed_creates_everything(app, runner, tmp_path):
    result = seed(runner, tmp_path, SEED)

    assert result.exit_code == 0, result.output
    for label in ("client mobile", "client spa", "client service", "user alice", "api scope orders"):
        assert f"created {label}" in result.output
    with app.app_context():
        assert {c.client_id for c in db.session.scalars(select(Client))} == {"mobile", "spa", "service"}
        assert set(db.session.scalars(select(ApiScope.name))) == {"IdentityServerApi", "orders"}
        assert set(db.session.scalars(select(IdentityResource.name))) >= {"openid", "profile", "email", "offline_access"}
        mobile = db.session.scalar(select(Client).where(Client.client_id == "mobile"))
        assert mobile.client_name == "Mobile Apps"
        assert mobile.allowed_grant_types == ["hybrid"]
        assert mobile.redirect_uris == ["com.example.app:/callback"]
        assert mobile.post_logout_redirect_uris == ["com.example.app:/signout"]
        assert mobile.allowed_scopes == ["openid", "profile", "email", "IdentityServerApi"]
        assert (mobile.require_consent, mobile.require_pkce, mobile.allow_offline_access) == (False, True, True)
        assert mobile.allow_access_tokens_via_browser is True
        assert mobile.access_token_lifetime == 3600
        assert not mobile.is_public
        spa = db.session.scalar(select(Client).where(Client.client_id == "spa"))
        assert spa.is_public and spa.require_pkce
        assert spa.allowed_cors_origins == ["https://spa.example.com"]
        alice = db.session.scalar(select(User).where(User.username == "alice"))
        assert (alice.email, alice.name, alice.password_version) == ("alice@example.com", "Alice Example", 1)
        assert verify_password(alice.password_hash, ALICE_PASSWORD)
        assert verify_client_secret(mobile.secret_hashes, MOBILE_SECRET)
        assert not verify_client_secret(mobile.secret_hashes, SERVICE_SECRET)


def test_demo_seed_applies(app, runner):
    result = runner.invoke(args=["seed", "demo/seed.json"])

    assert result.exit_code == 0, result.output
    with app.app_context():
        assert {"mobile", "spa", "service"} <= set(db.session.scalars(select(Client.client_id)))
        assert db.session.scalar(select(User).where(User.username == "alice")) is not None


def test_second_run_changes_nothing(app, runner, tmp_path):
    first = seed(runner, tmp_path, SEED)
    assert first.exit_code == 0, first.output
    before = snapshot(app)

    second = seed(runner, tmp_path, SEED)

    assert second.exit_code == 0, second.output
    assert "No change" in second.output
    assert "created" not in second.output and "updated" not in second.output
    assert snapshot(app) == before


def test_changed_redirect_uris_are_updated(app, runner, tmp_path):
    seed(runner, tmp_path, SEED)
    before = snapshot(app)
    doc = seed_doc()
    doc["clients"][0]["redirect_uris"] = ["com.example.app:/callback2"]

    result = seed(runner, tmp_path, doc)

    assert result.exit_code == 0, result.output
    assert "updated client mobile" in result.output
    assert "client spa" not in result.output
    with app.app_context():
        mobile = db.session.scalar(select(Client).where(Client.client_id == "mobile"))
        assert mobile.redirect_uris == ["com.example.app:/callback2"]
        assert verify_client_secret(mobile.secret_hashes, MOBILE_SECRET)
    after = snapshot(app)
    assert after["users"] == before["users"]  # nothing else touched


def test_an_entry_is_the_whole_client_so_what_it_leaves_out_takes_its_default(app, runner, tmp_path):
    """docs/cli.md: a field an entry leaves out is not kept from the row: without client_secrets an
    existing confidential client becomes public (its secret no longer works), its require_mfa and
    consent go back to false. `clients update` is the way to change some fields."""
    doc = seed_doc()
    doc["clients"][0].update(require_consent=True, require_mfa=True)
    seed(runner, tmp_path, doc)
    partial = {"clients": [{"client_id": "mobile", "allowed_grant_types": ["hybrid"],
                            "redirect_uris": ["com.example.app:/callback"], "allowed_scopes": ["openid"]}]}

    result = seed(runner, tmp_path, partial)

    assert result.exit_code == 0, result.output
    with app.app_context():
        mobile = db.session.scalar(select(Client).where(Client.client_id == "mobile"))
        assert not mobile.secret_hashes and not verify_client_secret(mobile.secret_hashes, MOBILE_SECRET)
        assert (mobile.require_consent, mobile.require_mfa) == (False, False)


def password_is(app, user: User, password: str) -> bool:
    with app.app_context():
        return verify_password(user.password_hash, password)


def alice(app) -> User:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "alice"))
        db.session.expunge(user)
        return user


def test_a_password_in_the_file_does_not_overwrite_an_existing_users(app, runner, tmp_path):
    """The file's password is for creating the user; an existing user's password is theirs."""
    seed(runner, tmp_path, SEED)
    before = alice(app)
    doc = seed_doc()
    doc["users"][0]["password"] = "another-long-passphrase-42"

    result = seed(runner, tmp_path, doc)

    assert result.exit_code == 0, result.output
    assert "No change" in result.output and "updated" not in result.output
    after = alice(app)
    assert (after.password_hash, after.password_version) == (before.password_hash, 1)


def test_a_second_run_after_the_user_changed_the_password_changes_nothing(app, runner, tmp_path):
    assert seed(runner, tmp_path, SEED).exit_code == 0
    with app.app_context():
        accounts.set_password("alice", USERS_OWN_PASSWORD)
    before = snapshot(app)

    result = seed(runner, tmp_path, SEED)

    assert result.exit_code == 0, result.output
    assert "No change" in result.output
    assert "updated" not in result.output
    assert snapshot(app) == before
    assert password_is(app, alice(app), USERS_OWN_PASSWORD)


def test_other_fields_of_an_existing_user_are_updated_and_the_password_kept(app, runner, tmp_path):
    assert seed(runner, tmp_path, SEED).exit_code == 0
    with app.app_context():
        accounts.set_password("alice", USERS_OWN_PASSWORD)
    doc = seed_doc()
    doc["users"][0]["name"] = "Alice Renamed"

    result = seed(runner, tmp_path, doc)

    assert result.exit_code == 0, result.output
    assert "updated user alice" in result.output
    assert "Seeded: 0 created, 1 updated, 5 unchanged." in result.output
    after = alice(app)
    assert after.name == "Alice Renamed"
    assert after.password_version == 2
    assert password_is(app, after, USERS_OWN_PASSWORD)


def test_reset_passwords_sets_the_files_passwords_and_audits_each_user(app, runner, tmp_path):
    assert seed(runner, tmp_path, SEED).exit_code == 0
    with app.app_context():
        accounts.set_password("alice", USERS_OWN_PASSWORD)

    result = runner.invoke(args=["seed", "--reset-passwords", write(tmp_path, SEED)])

    assert result.exit_code == 0, result.output
    assert "updated user alice (password reset)" in result.output
    after = alice(app)
    assert after.password_version == 3
    assert password_is(app, after, ALICE_PASSWORD)
    with app.app_context():
        resets = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "password_reset_by_seed")).all()
        assert [(e.user_id, e.detail) for e in resets] == [(after.id, {"username": "alice"})]

    again = runner.invoke(args=["seed", "--reset-passwords", write(tmp_path, SEED)])

    assert again.exit_code == 0, again.output
    assert "No change" in again.output, "the password already is the file's: nothing written, nothing audited"
    assert alice(app).password_version == 3
    with app.app_context():
        assert len(db.session.scalars(select(AuditEvent).where(AuditEvent.event == "password_reset_by_seed")).all()) == 1


def test_the_first_run_on_a_fresh_database_counts_what_it_wrote(app, runner):
    """A fresh database has no API scope yet: the seed writes all six items (the local API scope too)."""
    with app.app_context():
        db.session.execute(delete(ApiScope))
        db.session.commit()

    result = runner.invoke(args=["seed", "demo/seed.json"])

    assert result.exit_code == 0, result.output
    assert "Seeded: 6 created, 0 updated, 0 unchanged." in result.output
    assert "created api scope IdentityServerApi" in result.output
    with app.app_context():
        scope = db.session.scalar(select(ApiScope).where(ApiScope.name == "IdentityServerApi"))
        assert scope.display_name == "Manage your account (local API)"


# --- hashes only --------------------------------------------------------------------


def test_plaintext_secrets_and_passwords_are_never_stored(app, runner, tmp_path):
    assert seed(runner, tmp_path, SEED).exit_code == 0

    everything = json.dumps(snapshot(app))
    for plaintext in (ALICE_PASSWORD, MOBILE_SECRET, SERVICE_SECRET):
        assert plaintext not in everything


ARGON2_RE = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$")


def assert_strong_argon2id(stored: str) -> None:
    match = ARGON2_RE.match(stored)
    assert match, f"not an argon2id hash: {stored[:20]}..."
    memory, time_cost, parallelism = map(int, match.groups())
    assert memory >= 19456 and time_cost >= 2 and parallelism >= 1


@pytest.mark.parametrize("app_config", [PRODUCTION_ARGON2])  # the defaults (the suite's are cheaper)
def test_hashes_are_argon2id_at_owasp_minimum(app, runner, tmp_path):
    assert seed(runner, tmp_path, SEED).exit_code == 0

    with app.app_context():
        alice = db.session.scalar(select(User).where(User.username == "alice"))
        assert_strong_argon2id(alice.password_hash)
        for client in db.session.scalars(select(Client).where(Client.client_id.in_(["mobile", "service"]))):
            assert len(client.secret_hashes) == 1
            assert_strong_argon2id(client.secret_hashes[0])


# --- bad files: nothing written ----------------------------------------------------------


def _client(doc, client_id="mobile"):
    return next(c for c in doc["clients"] if c["client_id"] == client_id)


def _without(key, client_id="mobile"):
    doc = seed_doc()
    del _client(doc, client_id)[key]
    return doc


def _client_with(client_id="mobile", **fields):
    doc = seed_doc()
    _client(doc, client_id).update(fields)
    return doc


def _user_with(**fields):
    doc = seed_doc()
    doc["users"][0].update(fields)
    return doc


def _duplicate_client():
    doc = seed_doc()
    doc["clients"].append(copy.deepcopy(doc["clients"][0]))
    return doc


def _user_without_password():
    doc = seed_doc()
    del doc["users"][0]["password"]
    return doc


BAD_FILES = {
    "not json": ('{"clients": [', ["not valid JSON"]),
    "top level a list": ("[]", ["top level", "object"]),
    "top level a string": ('"clients"', ["top level", "object"]),
    "client without allowed_grant_types": (_without("allowed_grant_types"), ["client 'mobile'", "allowed_grant_types"]),
    "user without password": (_user_without_password(), ["user 'alice'", "password"]),
    "unknown grant type": (_client_with(allowed_grant_types=["device_code"]), ["client 'mobile'", "allowed_grant_types", "device_code"]),
    "duplicate client_id": (_duplicate_client(), ["client 'mobile'", "client_id", "twice"]),
    "public client with client_credentials": (
        _client_with("spa", allowed_grant_types=["authorization_code", "client_credentials"]),
        ["client 'spa'", "allowed_grant_types", "client_credentials"],
    ),
    "public client without pkce": (_client_with("spa", require_pkce=False), ["client 'spa'", "require_pkce"]),
    "redirect uri with fragment": (_client_with(redirect_uris=["https://app.example.com/cb#frag"]), ["client 'mobile'", "redirect_uris", "fragment"]),
    "post-logout uri with fragment": (_client_with(post_logout_redirect_uris=["https://app.example.com/#x"]), ["client 'mobile'", "post_logout_redirect_uris", "fragment"]),
    "relative redirect uri": (_client_with(redirect_uris=["/callback"]), ["client 'mobile'", "redirect_uris"]),
    "javascript redirect uri": (_client_with(redirect_uris=["javascript:alert(1)"]), ["client 'mobile'", "redirect_uris"]),
    "redirect uri with userinfo": (_client_with(redirect_uris=["http://evil@127.0.0.1/callback"]),
                                   ["client 'mobile'", "redirect_uris", "user information"]),
    "redirect uri with a backslash": (_client_with(redirect_uris=["http://127.0.0.1:1234\\evil.test/cb"]),
                                      ["client 'mobile'", "redirect_uris", "backslash"]),
    "cors origin with a path": (_client_with("spa", allowed_cors_origins=["https://spa.example.com/app"]), ["client 'spa'", "allowed_cors_origins"]),
    "unknown scope": (_client_with(allowed_scopes=["openid", "payroll"]), ["client 'mobile'", "allowed_scopes", "payroll"]),
    "short password": (_user_with(password="short-pass"), ["user 'alice'", "password", "15"]),
    "common password": (_user_with(password="1qaz2wsx3edc4rfv"), ["user 'alice'", "password", "common"]),
    "password equal to username": (
        _user_with(username="correcthorsebatterystaple", password="correcthorsebatterystaple"),
        ["user 'correcthorsebatterystaple'", "password", "user name"],
    ),
    # casefold() lengthens these past their columns ("ﬃ" is "ffi", "ß" is "ss"): PostgreSQL refused them, a 503
    "user name longer once normalized": (_user_with(username="\ufb03" * 100), ["username", "at most 150"]),
    "address longer once normalized": (_user_with(email="\u00df" * 300 + "@example.org"), ["email", "at most 320"]),
    # invisible or control characters: a user name that looks like another, or a name that turns a
    # mail's text around (U+202E), in the mails this server sends
    "user name with an invisible character": (_user_with(username="ali\u200bce"), ["username", "invisible"]),
    "user name with a control character": (_user_with(username="alice\x07"), ["username", "invisible"]),
    "user name with a Hangul filler": (_user_with(username="alice\u3164"), ["username", "invisible"]),
    "user name with a variation selector": (_user_with(username="alice\ufe0f"), ["username", "invisible"]),
    "name with a text-direction override": (_user_with(name="Alice \u202egnp.exe"), ["user 'alice'", "name", "control"]),
    # no mail can reach it (the mail library has no SMTPUTF8): the pages refuse it, the seed took it
    "address whose part before the @ is not ASCII": (_user_with(email="\u00e9lise@example.org"),
                                                      ["user 'alice'", "email", "plain ASCII"]),
    "unknown client field": (_client_with(colour="blue"), ["client 'mobile'", "colour", "Unknown field"]),
    "unknown user field": (_user_with(is_admin=True), ["user 'alice'", "is_admin", "Unknown field"]),
    "unknown top-level field": (seed_doc(identity_resources=[]), ["identity_resources", "Unknown field"]),
    "wrong type": (_client_with(access_token_lifetime="forever"), ["client 'mobile'", "access_token_lifetime"]),
    "api scope named like an identity scope": (
        seed_doc(api_scopes=SEED["api_scopes"] + [{"name": "openid"}]), ["api scope 'openid'", "name"]
    ),
}


@pytest.mark.parametrize("content, expected", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_file_is_refused_and_writes_nothing(app, runner, tmp_path, content, expected):
    before = snapshot(app)

    result = seed(runner, tmp_path, content)

    assert result.exit_code != 0
    for text in expected:
        assert text in result.output, f"{text!r} not in {result.output!r}"
    assert "Traceback" not in result.output
    assert snapshot(app) == before


def test_bad_file_leaves_existing_data_untouched(app, runner, tmp_path):
    assert seed(runner, tmp_path, SEED).exit_code == 0
    before = snapshot(app)
    doc = seed_doc()
    doc["clients"][0]["redirect_uris"] = ["com.example.app:/elsewhere"]  # a valid change...
    doc["users"][0]["password"] = "password"  # ...next to a bad one

    result = seed(runner, tmp_path, doc)

    assert result.exit_code != 0
    assert snapshot(app) == before


def test_valid_client_then_invalid_user_writes_no_client(app, runner, tmp_path):
    before = row_counts(app)
    doc = {
        "clients": [{"client_id": "tool", "client_secrets": ["a-long-enough-secret"],
                     "allowed_grant_types": ["client_credentials"], "allowed_scopes": ["IdentityServerApi"]}],
        "users": [{"username": "bob", "password": "bob"}],
    }

    result = seed(runner, tmp_path, doc)

    assert result.exit_code != 0
    assert "user 'bob'" in result.output and "password" in result.output
    assert row_counts(app) == before
    with app.app_context():
        assert db.session.scalar(select(Client).where(Client.client_id == "tool")) is None


def test_every_error_in_a_file_is_reported(app, runner, tmp_path):
    doc = seed_doc()
    _client(doc, "mobile")["allowed_grant_types"] = ["magic"]
    _client(doc, "spa")["redirect_uris"] = ["https://spa.example.com/#"]

    result = seed(runner, tmp_path, doc)

    assert result.exit_code != 0
    assert "client 'mobile'" in result.output and "client 'spa'" in result.output


def test_cors_origins_are_stored_as_browsers_send_them(app, runner, tmp_path):
    doc = _client_with("spa", allowed_cors_origins=["https://SPA.Example.com/", "http://localhost:8080"])

    assert seed(runner, tmp_path, doc).exit_code == 0
    assert "No change" in seed(runner, tmp_path, doc).output

    with app.app_context():
        spa = db.session.scalar(select(Client).where(Client.client_id == "spa"))
        assert spa.allowed_cors_origins == ["https://spa.example.com", "http://localhost:8080"]


def test_cors_origins_with_an_international_host_or_a_default_port_are_stored_as_browsers_send_them(
        app, client, runner, tmp_path):
    """A browser's Origin header has the host's IDNA form (xn--) and no default port: an origin
    registered as "https://bücher.example" or "https://spa.example.com:443" matched no request,
    and its app got no CORS answer."""
    doc = _client_with("spa", allowed_cors_origins=["https://B\u00fccher.example", "https://spa.example.com:443",
                                                    "http://localhost:80/", "http://localhost:8443"])

    assert seed(runner, tmp_path, doc).exit_code == 0
    assert "No change" in seed(runner, tmp_path, doc).output
    with app.app_context():
        spa = db.session.scalar(select(Client).where(Client.client_id == "spa"))
        assert spa.allowed_cors_origins == ["https://xn--bcher-kva.example", "https://spa.example.com",
                                            "http://localhost", "http://localhost:8443"]
    for origin in ("https://xn--bcher-kva.example", "https://spa.example.com"):
        preflight = client.options("/connect/token", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert preflight.headers.get("Access-Control-Allow-Origin") == origin


@pytest.mark.parametrize("origin", [
    "https://stra\u00dfe.example",  # IDNA 2003 makes it strasse, browsers (UTS 46) xn--strae-oqa
    "https://\uff45xample.com",  # full-width letters: example.com, written another way
    "https://spa.example.com:99999",  # no port: it was stored, and read as none
])
def test_a_cors_origin_whose_host_has_no_single_idna_form_or_no_port_is_refused(app, runner, tmp_path, origin):
    before = snapshot(app)
    result = seed(runner, tmp_path, _client_with("spa", allowed_cors_origins=[origin]))
    assert result.exit_code != 0
    assert "allowed_cors_origins" in result.output and "Traceback" not in result.output
    assert snapshot(app) == before


def test_a_file_with_a_byte_order_mark_is_read(app, runner, tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(SEED).encode())

    result = runner.invoke(args=["seed", str(path)])

    assert result.exit_code == 0, result.output
    assert "created client mobile" in result.output


def test_missing_file_is_a_usage_error(runner, tmp_path):
    result = runner.invoke(args=["seed", str(tmp_path / "nope.json")])

    assert result.exit_code == 2
    assert "nope.json" in result.output
