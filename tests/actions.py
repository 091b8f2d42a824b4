"""Tiny action helpers for driving sign-in and OAuth flows through the Flask test client."""

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

from conftest import ALICE_PASSWORD, FLOW_SECRETS, csrf_token


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def redirect_params(location: str) -> dict:
    """Parameters of a redirect to a client, from its query or fragment."""
    parts = urlsplit(location)
    raw = parts.fragment or parts.query
    return {k: v[0] for k, v in parse_qs(raw).items()}


def padded_chunks(padding: int, tail: bytes):
    """A form body streamed in 1 KiB chunks (no Content-Length): `padding` bytes, then `tail`."""
    for _ in range(padding // 1024):
        yield b"pad=" + b"p" * 1019 + b"&"
    yield tail


class AuthActions:
    def __init__(self, client):
        self.client = client

    def login(self, username="alice", password=ALICE_PASSWORD, return_url=None, remember=False):
        url = "/account/login" + (f"?{urlencode({'returnUrl': return_url})}" if return_url else "")
        page = self.client.get(url)
        data = {"csrf_token": csrf_token(page.get_data(as_text=True)), "username": username, "password": password}
        if remember:
            data["remember"] = "y"
        return self.client.post(url, data=data)

    def logout(self):
        page = self.client.get("/account/logout")
        return self.client.post("/account/logout", data={"csrf_token": csrf_token(page.get_data(as_text=True))})


class OAuthActions:
    """Drive /connect/authorize and /connect/token for the demo clients."""

    SECRETS = {"mobile": "s3cret", "service": "service-secret-change-me", **FLOW_SECRETS}
    REDIRECTS = {"mobile": "com.example.app:/callback", "spa": "http://127.0.0.1:8080/callback",
                 "web": "https://web.example.com/cb", "native": "com.example.native:/cb",
                 "implicit": "https://implicit.example.com/cb"}

    def __init__(self, client):
        self.client = client

    def authorize_params(self, client_id="spa", response_type="code", scope="openid profile", **extra):
        params = {"client_id": client_id, "response_type": response_type, "scope": scope,
                  "redirect_uri": self.REDIRECTS.get(client_id, ""), "state": secrets.token_urlsafe(8)}
        params.update(extra)
        return {k: v for k, v in params.items() if v is not None}

    def authorize(self, **params):
        return self.client.get("/connect/authorize?" + urlencode(self.authorize_params(**params)))

    def consent(self, location: str, decision="allow", remember=False):
        page = self.client.get(location)
        data = {"csrf_token": csrf_token(page.get_data(as_text=True)), "decision": decision}
        if remember:
            data["remember"] = "y"
        return self.client.post(location, data=data)

    def token(self, client_id, auth="basic", **form):
        headers = {}
        secret = self.SECRETS.get(client_id)
        if secret and auth == "basic":
            headers["Authorization"] = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        else:
            form["client_id"] = client_id
            if secret and auth == "post":
                form["client_secret"] = secret
        return self.client.post("/connect/token", data=form, headers=headers)

    def code_with_pkce(self, client_id="native", scope="openid") -> tuple[str, str]:
        """Signed in already, a client that asks no consent: (its code, the PKCE code_verifier)."""
        verifier, challenge = pkce_pair()
        response = self.authorize(client_id=client_id, scope=scope, code_challenge=challenge,
                                  code_challenge_method="S256")
        return redirect_params(response.headers["Location"])["code"], verifier

    def redeem(self, client_id: str, code: str, verifier: str):
        """The token endpoint's answer to the code (code_with_pkce)."""
        return self.token(client_id, grant_type="authorization_code", code=code,
                          redirect_uri=self.REDIRECTS[client_id], code_verifier=verifier)

    def code_flow(self, client_id="spa", scope="openid profile", response_type="code", consent=True, **extra):
        """Signed in already: authorize with PKCE, consent if asked, redeem the code. Returns (token json, redirect params)."""
        verifier, challenge = pkce_pair()
        response = self.authorize(client_id=client_id, scope=scope, response_type=response_type,
                                  code_challenge=challenge, code_challenge_method="S256", **extra)
        if response.status_code == 302 and "/consent" in response.headers["Location"] and consent:
            response = self.consent(response.headers["Location"])  # a POST: answered with a 303
        assert response.status_code in (302, 303), response.get_data(as_text=True)
        params = redirect_params(response.headers["Location"])
        assert "code" in params, params
        token = self.token(client_id, grant_type="authorization_code", code=params["code"],
                           redirect_uri=self.REDIRECTS[client_id], code_verifier=verifier)
        return token, params


def argon2_costs(attempt, monkeypatch) -> list[int]:
    """The cost (memory times passes) of each Argon2 verification `attempt()` ran: the real
    verifications, each passed on to the hasher (counted, not timed)."""
    from argon2 import PasswordHasher, extract_parameters

    costs = []
    real = PasswordHasher.verify

    def counted(self, hash, password):
        params = extract_parameters(hash)
        costs.append(params.memory_cost * params.time_cost)
        return real(self, hash, password)

    with monkeypatch.context() as patch:
        patch.setattr(PasswordHasher, "verify", counted)
        attempt()
    return costs


def web_access_token(oauth, scope="openid profile") -> str:
    """An access token of the `web` client (code flow) for the signed-in user of `oauth`'s client."""
    response = oauth.authorize(client_id="web", scope=scope)
    code = redirect_params(response.headers["Location"])["code"]
    return oauth.token("web", grant_type="authorization_code", code=code,
                       redirect_uri="https://web.example.com/cb").get_json()["access_token"]


def forgot_password_from(client, ip: str, login: str) -> int:
    """The status of a forgot-password post naming `login` (user name or address) from `ip`."""
    page = client.get("/account/forgot-password", environ_base={"REMOTE_ADDR": ip})
    return client.post("/account/forgot-password", environ_base={"REMOTE_ADDR": ip},
                       data={"csrf_token": csrf_token(page.get_data(as_text=True)), "username": login}).status_code
