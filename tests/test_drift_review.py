"""Review from outside: live grants against a configuration that moves under them. An operator
applies a new seed or uses the CLI while users hold codes, refresh tokens, access tokens,
remembered consents and browser sessions; the next request with the old grant gets no more than
the configuration now allows."""

import pytest

from actions import AuthActions, OAuthActions, redirect_params
from drift_review_support import apply_seed_file, code_row, flow_client

WEB_REDIRECT = "https://web.example.com/cb"


@pytest.mark.database_independent
def test_a_code_issued_without_pkce_is_not_redeemed_once_a_seed_requires_pkce(client, app, flow_clients, runner,
                                                                               tmp_path):
    """docs/endpoints.md: PKCE is required for clients with `require_pkce`. A code the confidential
    client got without a code_challenge before the seed set `require_pkce` was still redeemed with
    no code_verifier: the grant got what the client's configuration no longer allows (RFC 9700
    2.1.1, PKCE against code injection), as a code carrying a scope since removed is refused."""
    AuthActions(client).login()
    oauth = OAuthActions(client)
    issued = oauth.authorize(client_id="web", scope="openid")
    code = redirect_params(issued.headers["Location"])["code"]
    apply_seed_file(runner, tmp_path, flow_client("web", require_pkce=True))
    redeemed = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri=WEB_REDIRECT)
    assert redeemed.status_code == 400, f"redeemed without PKCE: {redeemed.status_code}"
    assert redeemed.get_json()["error"] == "invalid_grant", redeemed.get_json()
    assert "access_token" not in redeemed.get_json()
    assert code_row(app, "web").consumed_at is not None  # spent, as every refused redemption of a found code
