from urllib.parse import urlencode
from actions import AuthActions, pkce_pair

def q(**p): return "/connect/authorize?" + urlencode(p)

def test_probe(client, flow_clients, app):
    v, c = pkce_pair()
    base = dict(client_id="mobile-pkce", redirect_uri="com.example.app:/callback", scope="openid offline_access", state="S1", response_type="code", code_challenge=c, code_challenge_method="S256")
    AuthActions(client).login()
    for extra in [dict(prompt="foo"), dict(prompt="none login"), dict(prompt="none consent"), dict(max_age="-1"), dict(response_type="code id_token", nonce="n"), dict(response_type="token"), dict(response_mode="form_post"), dict(scope="profile"), dict(scope=""), dict(code_challenge="a"*129), dict(claims='{"id_token":{}}'), dict(registration="x"), dict(acr_values="urn:foo")]:
        r = client.get(q(**{**base, **extra}))
        print(extra, r.status_code, r.headers.get("Location", "")[:200])
