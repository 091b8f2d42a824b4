"""A relying party's back-channel logout endpoint, for tests: a real HTTP server on loopback.

It validates each logout token as Back-Channel Logout 1.0 section 2.6 asks (signature against
the provider's JWKS, typ logout+jwt, iss, aud, iat, exp, jti, the events claim, sub and/or sid,
no nonce) and answers 200 for a valid one, 400 otherwise. Tests make it answer `status`, wait
`delay` seconds first, or stop and start again on the same port (the RP down, then back up).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt

EVENT = "http://schemas.openid.net/event/backchannel-logout"


class RelyingParty:
    def __init__(self, *, jwks: dict, issuer: str, client_id: str):
        self.jwks, self.issuer, self.client_id = jwks, issuer, client_id
        self.status = 200
        self.delay = 0.0
        self.received: list[dict] = []  # every request: {"claims" or "error", "content_type"}
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    # --- the server ---------------------------------------------------------------------
    def start(self) -> "RelyingParty":
        rp = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                record = {"content_type": self.headers.get("Content-Type"), "path": self.path}
                try:
                    (token,) = parse_qs(body)["logout_token"]
                    record["claims"] = rp.validate(token)
                    status = rp.status
                except Exception as err:  # an invalid token: the RP refuses it
                    record["error"] = f"{err.__class__.__name__}: {err}"
                    status = 400
                rp.received.append(record)
                if rp.delay:
                    time.sleep(rp.delay)
                self.send_response(status)
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/backchannel-logout"

    # --- what it checks -----------------------------------------------------------------
    def validate(self, token: str) -> dict:
        header = jwt.get_unverified_header(token)
        if header.get("typ") != "logout+jwt":
            raise ValueError(f"typ is {header.get('typ')!r}")
        key = next(k for k in self.jwks["keys"] if k["kid"] == header["kid"])
        claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=[header["alg"]], audience=self.client_id,
                            issuer=self.issuer, options={"require": ["iss", "aud", "iat", "exp", "jti", "events"]})
        if EVENT not in claims["events"] or claims["events"][EVENT] != {}:
            raise ValueError(f"events is {json.dumps(claims['events'])}")
        if "sub" not in claims and "sid" not in claims:
            raise ValueError("neither sub nor sid")
        if "nonce" in claims:
            raise ValueError("a nonce in a logout token")
        return claims

    @property
    def tokens(self) -> list[dict]:
        """The claims of every valid token received, in order."""
        return [r["claims"] for r in self.received if "claims" in r]

    @property
    def errors(self) -> list[str]:
        return [r["error"] for r in self.received if "error" in r]
