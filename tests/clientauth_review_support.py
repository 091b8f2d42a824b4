"""Helpers for tests/test_clientauth_review.py: clients seeded as docs/cli.md says, and HTTP Basic
credentials written as RFC 6749 section 2.3.1 says (each part form-urlencoded before Base64)."""

import base64
import json
from urllib.parse import quote_plus

from identity.services.seed import apply_seed, load_seed

#: a secret with every character section 2.3.1's encoding is about: `:`, `%`, `+`, a space, non-ASCII
ODD_SECRET = "a:b%c+d e é/=&"
SECOND_SECRET = "second-secret-0123456789"
ENDPOINTS = {"/connect/token": {"grant_type": "client_credentials", "scope": "IdentityServerApi"},
             "/connect/revocation": {"token": "unknown-token"},
             "/connect/introspect": {"token": "unknown-token"}}
SEED = {
    "api_scopes": [{"name": "IdentityServerApi", "display_name": "Local API"}],
    "users": [],
    "clients": [
        {"client_id": "svc", "client_name": "Service", "client_secrets": [ODD_SECRET, SECOND_SECRET],
         "allowed_grant_types": ["client_credentials"], "allowed_scopes": ["IdentityServerApi"]},
        {"client_id": "other", "client_name": "Other", "client_secrets": ["other-secret-0123456789"],
         "allowed_grant_types": ["client_credentials"], "allowed_scopes": ["IdentityServerApi"]},
        {"client_id": "pub", "client_name": "Public", "allowed_grant_types": ["authorization_code"],
         "redirect_uris": ["https://pub.example.com/cb"], "allowed_scopes": ["openid"]},
    ],
}


def seed(app, data=None) -> None:
    with app.app_context():
        apply_seed(load_seed(json.dumps(data or SEED)))


def basic(client_id: str, secret: str, *, encoded: bool = True) -> dict:
    """The Authorization header of client_secret_basic (section 2.3.1's encoding unless encoded=False)."""
    if encoded:
        client_id, secret = quote_plus(client_id), quote_plus(secret)
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


class RawAnswer:
    def __init__(self, raw: bytes):
        head, _, self.body = raw.decode("latin-1").partition("\r\n\r\n")
        lines = head.split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]

    def header(self, name: str) -> str:
        return next(value for key, value in self.headers if key.lower() == name.lower())

    def json(self):
        return json.loads(self.body)


def raw_post(base_url: str, path: str, headers: list[tuple[str, str]], form: dict) -> RawAnswer:
    """A POST written by hand on a socket: HTTP clients (requests, httpx) send one header per name."""
    import socket
    from urllib.parse import urlencode, urlsplit

    parts = urlsplit(base_url)
    body = urlencode(form).encode()
    lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/x-www-form-urlencoded",
             f"Content-Length: {len(body)}", "Connection: close", *(f"{name}: {value}" for name, value in headers)]
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    return RawAnswer(raw)
