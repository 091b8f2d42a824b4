"""The operator's incident steps, checked against what the docs promise they do."""

from actions import AuthActions, OAuthActions, redirect_params

WEB_CALLBACK = "https://web.example.com/cb"


def test_a_code_sent_to_a_redirect_uri_removed_since_redeems_nothing(client, flow_clients, runner):
    """docs/cli.md: `clients update --redirect-uri` replaces the list, and a scope removed that way
    is refused where it was granted before too. A redirect URI removed (one an attacker got
    registered) still redeemed the codes already sent to it, for the code's 5 minutes after the
    operator's change."""
    AuthActions(client).login()
    oauth = OAuthActions(client)
    code = redirect_params(oauth.authorize(client_id="web", scope="openid").headers["Location"])["code"]
    result = runner.invoke(args=["clients", "update", "web", "--redirect-uri", "https://web.example.com/other"])
    assert result.exit_code == 0, result.output

    response = oauth.token("web", grant_type="authorization_code", code=code, redirect_uri=WEB_CALLBACK)

    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant", response.get_json()
