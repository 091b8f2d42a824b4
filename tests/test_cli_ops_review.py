"""The operator's surface, reviewed: the CLI, the seed file, the purge and the migrations."""

import json

import pytest
from sqlalchemy import select

from conftest import empty_database
from identity.extensions import db
from identity.models import ApiScope, Client, User
from identity.services.seed import apply_seed, load_seed

GUARDED = {"client_id": "guarded", "client_secrets": ["guarded-secret-0123456789"],
           "allowed_grant_types": ["authorization_code"], "redirect_uris": ["https://rp.example.com/cb"],
           "allowed_scopes": ["openid"], "require_mfa": True, "require_verified_email": True,
           "backchannel_logout_uri": "https://rp.example.com/bc", "backchannel_logout_session_required": True,
           "frontchannel_logout_uri": "https://rp.example.com/fc", "frontchannel_logout_session_required": True}


@pytest.fixture
def guarded(app):
    with app.app_context():
        apply_seed(load_seed(json.dumps({"clients": [GUARDED]})))
    yield app
    empty_database(app)


def client_row(app, client_id):
    with app.app_context():
        found = db.session.scalar(select(Client).where(Client.client_id == client_id))
        db.session.expunge_all()
        return found


def test_update_keeps_the_fields_it_cannot_change(guarded, runner):
    result = runner.invoke(args=["clients", "update", "guarded", "--access-token-lifetime", "900"])
    assert result.exit_code == 0, result.output
    after = client_row(guarded, "guarded")
    assert after.access_token_lifetime == 900
    assert (after.require_mfa, after.require_verified_email) == (True, True)
    assert (after.backchannel_logout_uri, after.backchannel_logout_session_required) == ("https://rp.example.com/bc", True)
    assert (after.frontchannel_logout_uri, after.frontchannel_logout_session_required) == ("https://rp.example.com/fc", True)


def seed_file(tmp_path, doc) -> str:
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(doc))
    return str(path)


def refused_in_one_line(result, *expected):
    """Exit 1 with one `Error: ...` line naming what is wrong, and no exception escaping (a traceback)."""
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and len(result.output.splitlines()) == 1, result.output
    for text in expected:
        assert text in result.output, result.output


def client_ids(app):
    with app.app_context():
        found = set(db.session.scalars(select(Client.client_id)))
        db.session.remove()
        return found


URI_FIELDS = {
    "redirect uri": {"redirect_uris": ["https://[::1/cb"]},
    "post-logout uri": {"post_logout_redirect_uris": ["https://[::1/bye"]},
    "cors origin": {"allowed_cors_origins": ["https://[::1"]},
    "back-channel uri": {"backchannel_logout_uri": "https://[::1/bc"},
    "front-channel uri": {"frontchannel_logout_uri": "https://[::1/fc"},
    "full-width at sign in the host": {"redirect_uris": ["https://rp.example.com\uff20evil.test/cb"]},
}


@pytest.mark.parametrize("fields", URI_FIELDS.values(), ids=URI_FIELDS.keys())
def test_a_uri_that_cannot_be_parsed_is_refused_by_the_seed(app, runner, tmp_path, fields):
    first = {**GUARDED, "client_id": "first"}
    second = {**GUARDED, "client_id": "second", **fields}
    result = runner.invoke(args=["seed", seed_file(tmp_path, {"clients": [first, second]})])
    refused_in_one_line(result, "client 'second'", next(iter(fields)))
    assert client_ids(app) == set()


def test_a_uri_that_cannot_be_parsed_is_refused_by_clients_add(app, runner):
    result = runner.invoke(args=["clients", "add", "web", "--grant-type", "authorization_code",
                                 "--redirect-uri", "https://[::1/cb", "--scope", "openid"])
    refused_in_one_line(result, "redirect_uris")
    assert client_ids(app) == set()


USER = {"username": "bob", "email": "bob@example.com", "password": "marble-violet-canyon-482", "name": "Bob"}
NUL_FILES = {
    "user's name": ({"users": [USER, {**USER, "username": "carol", "email": None, "name": "Ca\x00rol"}]},
                    "user 'carol'", "name"),
    "user name": ({"users": [USER, {**USER, "username": "ca\x00rol", "email": None}]}, "user 'ca\\x00rol'", "username"),
    "client name": ({"clients": [GUARDED, {**GUARDED, "client_id": "second", "client_name": "Second\x00"}]},
                    "client 'second'", "client_name"),
    "redirect uri": ({"clients": [GUARDED, {**GUARDED, "client_id": "second",
                                            "redirect_uris": ["https://rp.example.com/c\x00b"]}]},
                     "client 'second'", "redirect_uris"),
    "scope display name": ({"api_scopes": [{"name": "orders", "display_name": "Or\x00ders"}]},
                           "api scope 'orders'", "display_name"),
}


@pytest.mark.parametrize(("doc", "label", "field"), NUL_FILES.values(), ids=NUL_FILES.keys())
def test_a_nul_character_in_a_seed_is_refused(app, runner, tmp_path, doc, label, field):
    """PostgreSQL refuses NUL in text: the seed names the item, rather than dying at the INSERT."""
    result = runner.invoke(args=["seed", seed_file(tmp_path, doc)])
    refused_in_one_line(result, label, field, "NUL")
    assert client_ids(app) == set()
    with app.app_context():
        assert db.session.scalar(select(User).where(User.username == "bob")) is None
        assert db.session.scalar(select(ApiScope).where(ApiScope.name == "orders")) is None
        db.session.remove()


def test_update_takes_the_options_of_add(guarded, runner):
    """docs/cli.md: `clients update` takes the options of `clients add`, the second factor and logout URIs too."""
    result = runner.invoke(args=["clients", "update", "guarded", "--no-require-mfa", "--no-require-verified-email",
                                 "--backchannel-logout-uri", "https://rp.example.com/bc2",
                                 "--no-backchannel-logout-session-required", "--frontchannel-logout-uri", "",
                                 "--no-frontchannel-logout-session-required", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["changed"] == [
        "require_mfa", "require_verified_email", "backchannel_logout_uri", "backchannel_logout_session_required",
        "frontchannel_logout_uri", "frontchannel_logout_session_required"]
    after = client_row(guarded, "guarded")
    assert (after.require_mfa, after.require_verified_email) == (False, False)
    assert (after.backchannel_logout_uri, after.backchannel_logout_session_required) == ("https://rp.example.com/bc2", False)
    assert (after.frontchannel_logout_uri, after.frontchannel_logout_session_required) == (None, False)
    back = runner.invoke(args=["clients", "update", "guarded", "--require-mfa"])
    assert back.output == "Updated client guarded: require_mfa.\n"
    assert client_row(guarded, "guarded").require_mfa is True
    refused = runner.invoke(args=["clients", "update", "guarded", "--backchannel-logout-uri", "http://rp.example.com/bc"])
    refused_in_one_line(refused, "backchannel_logout_uri", "https")


def test_a_secret_listed_twice_is_refused_rather_than_rewritten_on_every_run(app, runner, tmp_path):
    """Running a seed twice changes nothing the second time (CONTRACT.md): a secret listed twice was
    hashed twice on the first run and stored as one hash twice on the second, an 'update' each time."""
    secret = "twice-listed-secret-0123"
    doc = {"clients": [{"client_id": "dup", "client_secrets": [secret, secret],
                        "allowed_grant_types": ["client_credentials"]}]}
    result = runner.invoke(args=["seed", seed_file(tmp_path, doc)])
    refused_in_one_line(result, "client 'dup'", "client_secrets", "twice")
    assert secret not in result.output
    assert client_ids(app) == set()


@pytest.mark.parametrize("command", [["keys", "list"], ["keys", "rotate"]], ids=" ".join)
def test_a_key_encryption_key_that_opens_no_stored_key_is_one_line(app, runner, database_uri, command):
    """docs/signing-keys.md: the stored keys are opened with KEY_ENCRYPTION_KEY; one that opens none
    (the old key dropped from the list too soon) is named in one line, as `keys reencrypt` does."""
    from cryptography.fernet import Fernet

    from app import create_app
    from conftest import make_config

    assert runner.invoke(args=["keys", "list"]).exit_code == 0  # keys made under the suite's key
    other = create_app(make_config(database_uri, KEY_ENCRYPTION_KEY=Fernet.generate_key().decode()))
    try:
        result = other.test_cli_runner().invoke(args=command)
    finally:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()
    refused_in_one_line(result, "cannot be decrypted with any KEY_ENCRYPTION_KEY")


@pytest.mark.parametrize(("content", "expected"), [
    ('{"users": [{"username": "b\xe9b", "password": "marble-violet-canyon-482"}]}'.encode("latin-1"), "UTF-8"),
    (b'{"a": ' * 100_000, "not valid JSON"),
], ids=["latin-1", "nested too deep"])
def test_a_seed_file_that_cannot_be_read_is_one_line(app, runner, tmp_path, content, expected):
    """A file an editor saved in Latin-1, or JSON nested past Python's recursion limit, is refused
    in one line naming the file's problem, not with a UnicodeDecodeError or RecursionError traceback."""
    path = tmp_path / "seed.json"
    path.write_bytes(content)
    result = runner.invoke(args=["seed", str(path)])
    refused_in_one_line(result, "file", expected)


def _fernet_key():
    from cryptography.fernet import Fernet
    return Fernet.generate_key().decode()


PRODUCTION = {"ENVIRONMENT": "production", "ISSUER": "https://id.example.test", "KEY_ENCRYPTION_KEY": _fernet_key()}
PLAIN_HTTP = "http://rp.example.com/cb"


@pytest.mark.parametrize("app_config", [PRODUCTION])
@pytest.mark.parametrize("client", [
    {"client_id": "implicit-web", "allowed_grant_types": ["implicit"], "allow_access_tokens_via_browser": True},
    {"client_id": "hybrid-web", "client_secrets": ["hybrid-secret-0123456789"], "allowed_grant_types": ["hybrid"]},
    {"client_id": "public-web", "allowed_grant_types": ["authorization_code"]},
], ids=lambda c: c["client_id"])
def test_tokens_in_the_front_channel_never_go_to_a_plain_http_redirect_uri(app, runner, tmp_path, client):
    """OpenID Connect Core 3.1.2.1 and 3.2.2.1, Registration 2: http is for a confidential client's
    code flow, or a native app's loopback URI; an implicit or hybrid client (tokens in the URL),
    or a public one, with http://rp.example.com/cb in production had its tokens and codes sent
    in the clear."""
    doc = {"clients": [{**client, "redirect_uris": [PLAIN_HTTP], "allowed_scopes": ["openid"]}]}
    result = runner.invoke(args=["seed", seed_file(tmp_path, doc)])
    refused_in_one_line(result, f"client {client['client_id']!r}", "redirect_uris", "https")
    assert client_ids(app) == set()
    loopback = {"clients": [{**client, "redirect_uris": ["http://127.0.0.1/cb", "https://rp.example.com/cb"],
                             "allowed_scopes": ["openid"]}]}
    assert runner.invoke(args=["seed", seed_file(tmp_path, loopback)]).exit_code == 0


@pytest.mark.parametrize("app_config", [PRODUCTION])
def test_a_confidential_code_client_gets_no_plain_http_redirect_uri_either(app, runner, tmp_path):
    """RFC 9700 section 2.6: authorization responses MUST NOT travel unencrypted, so the server
    MUST NOT allow http redirect URIs but a native app's loopback ones. A confidential client's
    code is no token, but one read off the network is injected into the attacker's own session
    at the client (section 4.5), which redeems it with its secret: the victim's account there."""
    doc = {"clients": [{"client_id": "intranet", "client_secrets": ["intranet-secret-0123456789"],
                        "allowed_grant_types": ["authorization_code"], "redirect_uris": [PLAIN_HTTP],
                        "allowed_scopes": ["openid"]}]}
    result = runner.invoke(args=["seed", seed_file(tmp_path, doc)])
    refused_in_one_line(result, "client 'intranet'", "redirect_uris", "https")
    assert client_ids(app) == set()
    added = runner.invoke(args=["clients", "add", "intranet2", "--grant-type", "authorization_code",
                                "--redirect-uri", PLAIN_HTTP, "--scope", "openid"])
    assert added.exit_code != 0 and "https" in added.output, added.output
    assert client_ids(app) == set()
    doc["clients"][0]["redirect_uris"] = ["https://rp.example.com/cb", "http://127.0.0.1/cb"]
    assert runner.invoke(args=["seed", seed_file(tmp_path, doc)]).exit_code == 0


SURROGATE_FILES = {
    "client secret": ('{"clients": [{"client_id": "c", "client_secrets": ["\\ud800abcdefghijklmnop"], '
                      '"allowed_grant_types": ["client_credentials"]}]}', "client 'c'", "client_secrets"),
    "client name": ('{"clients": [{"client_id": "c", "client_name": "x\\ud800", "client_secrets": ["0123456789abcdef"], '
                    '"allowed_grant_types": ["client_credentials"]}]}', "client 'c'", "client_name"),
    "scope display name": ('{"api_scopes": [{"name": "orders", "display_name": "\\udfff"}]}', "api scope 'orders'", "display_name"),
    "user's name": ('{"users": [{"username": "u", "name": "\\ud800", "password": "marble-violet-canyon-482"}]}',
                    "user 'u'", "name"),
}


@pytest.mark.parametrize(("text", "label", "field"), SURROGATE_FILES.values(), ids=SURROGATE_FILES.keys())
def test_a_lone_surrogate_in_a_seed_is_refused(app, runner, tmp_path, text, label, field):
    """JSON can spell a lone surrogate (\\ud800), which no database stores and no hash takes: the seed
    died with a UnicodeEncodeError traceback while writing; now it names the item and field."""
    path = tmp_path / "seed.json"
    path.write_text(text)
    result = runner.invoke(args=["seed", str(path)])
    refused_in_one_line(result, label, field, "Unicode")
    assert "abcdefghijklmnop" not in result.output  # not the secret
    assert client_ids(app) == set()


@pytest.mark.parametrize("app_config", [PRODUCTION])
@pytest.mark.parametrize("uri", ["http://127.evil.example/cb", "http://127.0.0.1.nip.io/cb", "http://localhost.evil.example/cb"])
def test_a_host_name_that_starts_like_a_loopback_address_is_no_loopback_host(app, runner, tmp_path, uri):
    """A DNS name such as 127.evil.example resolves wherever its owner says: it is not the loopback
    host RFC 8252 lets a native app use over http, so a public client registering it is refused."""
    doc = {"clients": [{"client_id": "public-web", "allowed_grant_types": ["authorization_code"],
                        "redirect_uris": [uri], "allowed_scopes": ["openid"]}]}
    result = runner.invoke(args=["seed", seed_file(tmp_path, doc)])
    refused_in_one_line(result, "client 'public-web'", "redirect_uris", "https")
    assert client_ids(app) == set()


@pytest.mark.parametrize("app_config", [PRODUCTION])
@pytest.mark.parametrize("uri", ["http://127.0.0.1/cb", "http://127.1.2.3:8080/cb", "http://[::1]/cb",
                                 "http://localhost/cb"])
def test_a_loopback_redirect_uri_stays_allowed_for_a_public_client(app, runner, tmp_path, uri):
    doc = {"clients": [{"client_id": "native", "allowed_grant_types": ["authorization_code"],
                        "redirect_uris": [uri], "allowed_scopes": ["openid"]}]}
    result = runner.invoke(args=["seed", seed_file(tmp_path, doc)])
    assert result.exit_code == 0, result.output
