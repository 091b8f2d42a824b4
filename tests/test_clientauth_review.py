"""Client authentication at its edges (RFC 6749 section 2.3.1, RFC 7009, RFC 7662, OpenID Connect
Core section 9), at every endpoint that takes it: the token, revocation and introspection endpoints."""

from urllib.parse import quote_plus

import pytest

from actions import argon2_costs
from clientauth_review_support import ENDPOINTS, ODD_SECRET, SEED as SEED_DATA, basic, seed


@pytest.fixture
def clients(app):
    seed(app)
    return app


# --- credentials in the query string ---------------------------------------------------------------

@pytest.mark.database_independent
@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_a_client_secret_in_the_query_is_refused_beside_http_basic(client, clients, path):
    """RFC 6749 section 2.3.1: the client credentials "MUST NOT be included in the request URI",
    and a request uses one authentication method (section 2.3). A client_secret in the query
    beside HTTP Basic was ignored and the request answered, though the same secret in the body
    is invalid_request: the secret, now in every log and history that keeps URLs, went unnoticed."""
    response = client.post(f"{path}?client_secret={quote_plus('guess-0123')}", data=ENDPOINTS[path],
                           headers=basic("svc", ODD_SECRET))
    assert response.status_code == 400, f"{path}: {response.status_code} {response.get_data(as_text=True)[:80]}"
    assert response.get_json()["error"] == "invalid_request"


@pytest.mark.database_independent
@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_a_query_client_id_that_is_not_basics_is_refused(client, clients, path):
    """A body client_id that is not HTTP Basic's user name is invalid_request (docs/endpoints.md);
    the endpoints read the query as parameters too, yet a query client_id naming another client
    was let through and the request answered for Basic's client."""
    response = client.post(f"{path}?client_id=other", data=ENDPOINTS[path], headers=basic("svc", ODD_SECRET))
    assert response.status_code == 400, f"{path}: {response.status_code} {response.get_data(as_text=True)[:80]}"
    assert response.get_json()["error"] == "invalid_request"


# --- HTTP Basic that cannot be read ------------------------------------------------------------------

def _failed_authentications(app) -> list[tuple]:
    from sqlalchemy import select

    from identity.extensions import db
    from identity.models import AuditEvent

    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "client_auth_failed")
                                  .order_by(AuditEvent.id))
        found = [(e.client_id, e.detail) for e in rows]
        db.session.remove()
    return found


UNREADABLE_BASIC = {
    "no colon": "Basic " + __import__("base64").b64encode(b"svc").decode(),
    "not base64": "Basic svc:not-base64!",
    "not UTF-8": "Basic " + __import__("base64").b64encode("svc:é".encode("latin-1")).decode(),
    "two headers joined by the server": "Basic c3ZjOng=,Basic c3ZjOnk=",
}


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_an_unreadable_http_basic_header_is_audited_as_a_failed_client_authentication(client, clients, path):
    """docs/security.md: a client's failed authentication at the token, revocation and introspection
    endpoints is recorded (`client_auth_failed`, with the method and the endpoint). HTTP Basic
    credentials that cannot be read (no colon, not Base64, not UTF-8, or two Authorization headers,
    which gunicorn and granian join with a comma) are answered invalid_client as a wrong secret is,
    and count toward the same rate limit, but none was recorded: a guesser trying them was never seen."""
    endpoint = {"/connect/token": "token", "/connect/revocation": "revocation", "/connect/introspect": "introspection"}
    for header in UNREADABLE_BASIC.values():
        response = client.post(path, data=ENDPOINTS[path], headers={"Authorization": header})
        assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    recorded = _failed_authentications(clients)
    assert recorded == [(None, {"method": "client_secret_basic", "endpoint": endpoint[path]})] * len(UNREADABLE_BASIC), \
        f"{path}: {recorded}"


# --- discovery against the token endpoint ------------------------------------------------------------

@pytest.mark.database_independent
@pytest.mark.parametrize("app_config", [{"GRANT_TYPES_ENABLED": ["client_credentials"]}])
def test_discovery_offers_none_at_the_token_endpoint_only_with_a_grant_that_takes_it(client, clients):
    """docs/configuration.md: "discovery advertises exactly what is enabled". With client_credentials
    alone (confidential clients only), no grant of the token endpoint takes `none`, yet discovery
    offered it: a public client that reads it is refused every request (invalid_client)."""
    doc = client.get("/.well-known/openid-configuration").get_json()
    refused = client.post("/connect/token", data={"grant_type": "client_credentials", "client_id": "pub"})
    assert refused.status_code == 401 and refused.get_json()["error"] == "invalid_client"
    assert doc["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post"], \
        f"token_endpoint_auth_methods_supported: {doc['token_endpoint_auth_methods_supported']}"
    # revocation takes none from a public client whatever grants are enabled (RFC 7009 section 5)
    assert doc["revocation_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post", "none"]


# --- two Authorization headers, through the real servers ----------------------------------------------

@pytest.fixture(scope="module", params=["gunicorn", "granian"])
def served(request, tmp_path_factory):
    from servers import SERVERS, seeded_server

    from clientauth_review_support import SEED

    tmp = tmp_path_factory.mktemp(f"clientauth-{request.param}")
    with seeded_server(tmp, SEED, name=request.param, server=SERVERS[request.param]) as running:
        yield running


@pytest.mark.server
def test_two_authorization_headers_are_refused_and_audited_by_the_real_servers(served):
    """Two Authorization headers, the right credentials in either: the servers join them with a
    comma (RFC 9110 section 5.3), which reads as no Basic credentials at all. The answer must be
    invalid_client with the Basic challenge (RFC 6749 section 5.2), never a token, and the attempt
    recorded as a failed client authentication (docs/security.md)."""
    from clientauth_review_support import raw_post

    good = basic("svc", ODD_SECRET)["Authorization"]
    alone = raw_post(served.url, "/connect/token", [("Authorization", good)], ENDPOINTS["/connect/token"])
    assert alone.status == 200, alone.body
    for pair in ([good, basic("svc", "wrong")["Authorization"]], [basic("svc", "wrong")["Authorization"], good],
                 [good, good]):
        answer = raw_post(served.url, "/connect/token", [("Authorization", value) for value in pair],
                          ENDPOINTS["/connect/token"])
        assert answer.status == 401 and answer.json()["error"] == "invalid_client", (pair, answer.body)
        assert answer.header("WWW-Authenticate").startswith("Basic realm="), answer.headers
    tail = served.cli(["audit", "tail", "-n", "10"])
    failed = [line for line in tail.stdout.splitlines() if '"client_auth_failed"' in line]
    assert len(failed) == 3, tail.stdout


# --- the time of a failure after the Argon2 cost changed ----------------------------------------------

def _costs_of_a_failure(client, client_id: str, monkeypatch) -> list[int]:
    """The costs of the Argon2 verifications one failed authentication of `client_id` ran."""
    def attempt():
        response = client.post("/connect/token", data=ENDPOINTS["/connect/token"], headers=basic(client_id, "wrong-guess"))
        assert response.status_code == 401, response.get_data(as_text=True)

    return argon2_costs(attempt, monkeypatch)


def test_a_failed_authentication_costs_the_same_for_a_client_whose_secret_was_hashed_at_another_cost(
        client, clients, database_uri, monkeypatch):
    """docs/security.md: a failed client authentication costs one Argon2 verification whether the
    client id is unknown or not, so its time tells no one which client ids exist. The cost is a
    setting (FLASK_ARGON2_*), and a client secret's hash keeps the cost it was made with (a user's
    password is rehashed at their next sign-in; a client secret never is): after the cost was
    raised, a guess at a registered client's secret failed in a fraction of the time a guess at an
    unknown client took (the dummy verification is made at the new cost): every confidential
    client with an operator-chosen secret could be told from an unknown id by the clock. The
    test counts the verifications' costs rather than timing them (it timed them first: a
    registered client's failure took 1.0 ms, an unknown one's 20.7 ms)."""
    from app import create_app
    from conftest import PRODUCTION_ARGON2, HttpsClient, close_connections, make_config

    raised = create_app(make_config(database_uri, **PRODUCTION_ARGON2))  # secrets seeded at the suite's cheap cost
    raised.test_client_class = HttpsClient
    current = PRODUCTION_ARGON2["ARGON2_MEMORY_COST_KIB"] * PRODUCTION_ARGON2["ARGON2_TIME_COST"]
    try:
        http = raised.test_client()
        unknown = _costs_of_a_failure(http, "ghost", monkeypatch)
        known = _costs_of_a_failure(http, "other", monkeypatch)
    finally:
        close_connections(raised)
    assert max(unknown) >= current, unknown
    assert max(known) >= current, f"a registered client's failure ran verifications costing {known}, an unknown one's {unknown}"


# --- a seed that gives a client a secret, under the workers' client snapshots --------------------------

def _seed_file(tmp_path, data) -> str:
    import json

    path = tmp_path / "seed.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("app_config", [{"CLIENT_CACHE_SECONDS": 2}])
def test_a_seed_that_makes_a_public_client_confidential_returns_once_no_worker_serves_it_without_a_secret(
        client, clients, runner, tmp_path):
    """docs/cli.md: a seed that disables a client, makes it public or takes a secret away returns once
    no worker still serves the old client (CLIENT_CACHE_SECONDS). One that gave a public client a
    secret returned at once, and for the snapshot's life the client was still served as public:
    a request with no secret at all was answered (RFC 6749 section 3.2.1: a confidential client
    must authenticate)."""
    import copy

    revoke = {"token": "unknown-token", "client_id": "pub"}
    assert client.post("/connect/revocation", data=revoke).status_code == 200  # public: a snapshot taken
    data = copy.deepcopy(SEED_DATA)
    data["clients"][2]["client_secrets"] = ["pub-secret-0123456789"]
    result = runner.invoke(args=["seed", _seed_file(tmp_path, data)])
    assert result.exit_code == 0, result.output
    answer = client.post("/connect/revocation", data=revoke)
    assert answer.status_code == 401, f"right after the seed: {answer.status_code} {answer.get_data(as_text=True)}"


@pytest.mark.parametrize("app_config", [{"CLIENT_CACHE_SECONDS": 2}])
def test_a_seed_that_adds_a_secret_returns_once_every_worker_takes_it(client, clients, runner, tmp_path):
    """Rotating a secret with several at once (the seed format allows it): add the new one, move the
    client to it, then take the old one away. The seed that added it returned at once, and the
    client moved to it as told was refused (invalid_client) for up to CLIENT_CACHE_SECONDS."""
    import copy

    assert client.post("/connect/token", data=ENDPOINTS["/connect/token"],
                       headers=basic("svc", ODD_SECRET)).status_code == 200  # a snapshot taken
    data = copy.deepcopy(SEED_DATA)
    data["clients"][0]["client_secrets"].append("third-secret-0123456789")
    result = runner.invoke(args=["seed", _seed_file(tmp_path, data)])
    assert result.exit_code == 0, result.output
    answer = client.post("/connect/token", data=ENDPOINTS["/connect/token"], headers=basic("svc", "third-secret-0123456789"))
    assert answer.status_code == 200, f"right after the seed: {answer.status_code} {answer.get_data(as_text=True)}"


@pytest.mark.parametrize("app_config", [{"CLIENT_CACHE_SECONDS": 2}])
def test_a_seed_that_enables_a_client_returns_once_every_worker_serves_it(client, clients, runner, tmp_path):
    """docs/cli.md: the seed file may give a client "enabled": true, as `clients enable` does, and
    `clients enable` returns once every worker's snapshot is newer than the change. The seed
    returned at once, and the client it had just enabled was refused (invalid_client) for up to
    CLIENT_CACHE_SECONDS."""
    import copy

    assert runner.invoke(args=["clients", "disable", "svc"]).exit_code == 0
    refused = client.post("/connect/token", data=ENDPOINTS["/connect/token"], headers=basic("svc", ODD_SECRET))
    assert refused.status_code == 401  # a snapshot of the disabled client taken
    data = copy.deepcopy(SEED_DATA)
    data["clients"][0]["enabled"] = True
    result = runner.invoke(args=["seed", _seed_file(tmp_path, data)])
    assert result.exit_code == 0, result.output
    answer = client.post("/connect/token", data=ENDPOINTS["/connect/token"], headers=basic("svc", ODD_SECRET))
    assert answer.status_code == 200, f"right after the seed: {answer.status_code} {answer.get_data(as_text=True)}"


@pytest.mark.parametrize("app_config", [{"CLIENT_CACHE_SECONDS": 2}])
def test_a_client_added_after_its_id_was_tried_is_served_once_the_command_returns(client, clients, runner):
    """`clients add` prints the new client's secret, to be used at once (docs/cli.md). A worker that
    had been asked for the id shortly before (the app deployed before it was registered, retrying)
    remembered that no such client existed and refused the new one with invalid_client for up to
    CLIENT_CACHE_SECONDS after the command returned."""
    import json

    early = client.post("/connect/token", data=ENDPOINTS["/connect/token"], headers=basic("late", "not-yet"))
    assert early.status_code == 401
    added = runner.invoke(args=["clients", "add", "late", "--grant-type", "client_credentials",
                                "--scope", "IdentityServerApi", "--json"])
    assert added.exit_code == 0, added.output
    secret = json.loads(added.output)["client_secret"]
    answer = client.post("/connect/token", data=ENDPOINTS["/connect/token"], headers=basic("late", secret))
    assert answer.status_code == 200, f"right after clients add: {answer.status_code} {answer.get_data(as_text=True)}"
