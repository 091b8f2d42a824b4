"""Registering logout URIs: https only (http on loopback in development), no user information
or fragment; the seed file and `clients add` carry the fields; discovery advertises support."""

import json

import pytest

from identity.errors import ValidationFailed
from identity.extensions import db
from identity.services.clients import add_client, get_client

BASE = {"client_id": "rp", "allowed_grant_types": ["authorization_code"],
        # the front-channel URI must share a redirect URI's scheme, host and port: one for each case below
        "redirect_uris": ["https://rp.example.com/cb", "https://rp.example.com:8443/cb", "http://127.0.0.1:9000/cb",
                          "http://localhost:9000/cb"],
        "client_secrets": ["rp-secret-0123456789"], "allowed_scopes": ["openid"]}


@pytest.mark.parametrize("field", ["backchannel_logout_uri", "frontchannel_logout_uri"])
@pytest.mark.parametrize("uri,accepted", [
    ("https://rp.example.com/logout", True),
    ("https://rp.example.com:8443/logout?x=1", True),
    ("http://127.0.0.1:9000/logout", True),  # loopback, in development (tests run as "testing")
    ("http://localhost:9000/logout", True),
    ("http://rp.example.com/logout", False),
    ("http://10.0.0.5/logout", False),
    ("https://user:pw@rp.example.com/logout", False),
    ("https://rp.example.com/logout#frag", False),
    ("ftp://rp.example.com/logout", False),
    ("com.example.app:/logout", False),
    ("/logout", False),
    ("https://rp.example.com/log out", False),
    ("https://rp.example.com:99999/logout", False),
    ("https://rp.example.com:abc/logout", False),
])
def test_logout_uri_rules(app, seeded, field, uri, accepted):
    with app.app_context():
        if accepted:
            client, _ = add_client({**BASE, field: uri}, generate_secret=False)
            assert getattr(client, field) == uri
        else:
            with pytest.raises(ValidationFailed) as err:
                add_client({**BASE, field: uri}, generate_secret=False)
            assert f"client 'rp' {field}" in err.value.errors
            assert get_client("rp") is None
        db.session.remove()


@pytest.mark.parametrize("uri,accepted", [
    ("https://rp.example.com/fc", True),
    ("https://RP.Example.com:443/fc", True),
    ("https://other.example.com/fc", False),
    ("https://rp.example.com:444/fc", False),
    ("https://sub.rp.example.com/fc", False),
])
def test_frontchannel_logout_uri_shares_a_redirect_uris_origin(app, seeded, uri, accepted):
    """Front-Channel Logout 1.0 section 2: "The domain, port, and scheme of this URL MUST be the
    same as that of a registered Redirection URI value." The signed-out page frames it with the
    user's session id: a typo or a wrong copy must not frame another site."""
    one_origin = {**BASE, "redirect_uris": ["https://rp.example.com/cb"], "frontchannel_logout_uri": uri}
    with app.app_context():
        if accepted:
            client, _ = add_client(one_origin, generate_secret=False)
            assert client.frontchannel_logout_uri == uri
        else:
            with pytest.raises(ValidationFailed) as err:
                add_client(one_origin, generate_secret=False)
            assert "same scheme, host and port as a redirect URI" in json.dumps(err.value.errors)
            assert get_client("rp") is None
        db.session.remove()


def test_loopback_http_is_refused_in_production(app, seeded):
    app.config["ENVIRONMENT"] = "production"
    with app.app_context():
        with pytest.raises(ValidationFailed) as err:
            add_client({**BASE, "backchannel_logout_uri": "http://127.0.0.1:9000/logout"}, generate_secret=False)
        assert "must use https" in json.dumps(err.value.errors)
        db.session.remove()


def test_seed_file_carries_the_logout_fields(app, runner, tmp_path):
    seed = {"clients": [{**BASE, "backchannel_logout_uri": "https://rp.example.com/bc",
                         "backchannel_logout_session_required": True,
                         "frontchannel_logout_uri": "https://rp.example.com/fc",
                         "frontchannel_logout_session_required": True}]}
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(seed))
    result = runner.invoke(args=["seed", str(path)])
    assert result.exit_code == 0, result.output
    with app.app_context():
        client = get_client("rp")
        assert (client.backchannel_logout_uri, client.backchannel_logout_session_required) == ("https://rp.example.com/bc", True)
        assert (client.frontchannel_logout_uri, client.frontchannel_logout_session_required) == ("https://rp.example.com/fc", True)
        db.session.remove()
    path.write_text(json.dumps({"clients": [{**BASE, "backchannel_logout_uri": "http://rp.example.com/bc"}]}))
    refused = runner.invoke(args=["seed", str(path)])
    assert refused.exit_code != 0 and "backchannel_logout_uri" in refused.output


def test_clients_add_options(app, runner, seeded):
    result = runner.invoke(args=["clients", "add", "rp", "--grant-type", "authorization_code",
                                 "--redirect-uri", "https://rp.example.com/cb", "--scope", "openid",
                                 "--backchannel-logout-uri", "https://rp.example.com/bc",
                                 "--backchannel-logout-session-required",
                                 "--frontchannel-logout-uri", "https://rp.example.com/fc"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        client = get_client("rp")
        assert client.backchannel_logout_uri == "https://rp.example.com/bc" and client.backchannel_logout_session_required
        assert client.frontchannel_logout_uri == "https://rp.example.com/fc"
        assert not client.frontchannel_logout_session_required
        db.session.remove()
    refused = runner.invoke(args=["clients", "add", "rp2", "--grant-type", "authorization_code",
                                  "--redirect-uri", "https://rp.example.com/cb",
                                  "--backchannel-logout-uri", "http://rp.example.com/bc"])
    assert refused.exit_code != 0 and "must use https" in refused.output


def test_discovery_advertises_logout_support(client):
    doc = client.get("/.well-known/openid-configuration").get_json()
    for name in ("backchannel_logout_supported", "backchannel_logout_session_supported",
                 "frontchannel_logout_supported", "frontchannel_logout_session_supported"):
        assert doc[name] is True


@pytest.mark.parametrize("name,value", [("BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS", 0), ("BACKCHANNEL_LOGOUT_RETRY_SECONDS", "x"),
                                        ("BACKCHANNEL_LOGOUT_POLL_SECONDS", -1)])
def test_a_wrong_delivery_setting_is_one_line_naming_it(database_uri, name, value):
    from app import create_app
    from conftest import make_config
    from identity.config.startup import ConfigurationError
    with pytest.raises(ConfigurationError, match=name):  # TESTING: raised, not printed with exit 3
        create_app(make_config(database_uri, **{name: value}))
