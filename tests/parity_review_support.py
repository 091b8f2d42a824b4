"""Helpers for tests/test_parity_review.py: the same request on SQLite and on PostgreSQL."""

import json

from conftest import csrf_token
from webauthn_keys import SoftKey

ORIGIN, RP_ID = "https://localhost", "localhost"


def registration_with(key: SoftKey, challenge: str, *, transports: list[str]) -> str:
    """The software authenticator's answer to navigator.credentials.create(), with the
    `transports` the browser reports (outside what the authenticator signs)."""
    answer = json.loads(key.registration(challenge, origin=ORIGIN, rp_id=RP_ID))
    answer["response"]["transports"] = transports
    return json.dumps(answer)


def register_passkey(client, key: SoftKey, *, transports: list[str] | None = None, name: str = "Laptop"):
    """POST /account/mfa/passkeys for the signed-in user, as passkeys.js does."""
    csrf = csrf_token(client.get("/account/mfa").get_data(as_text=True))
    options = client.post("/account/mfa/passkeys/options", headers={"X-CSRFToken": csrf})
    assert options.status_code == 200, options.get_data(as_text=True)
    challenge = options.get_json()["challenge"]
    credential = (registration_with(key, challenge, transports=transports) if transports is not None
                  else key.registration(challenge, origin=ORIGIN, rp_id=RP_ID))
    return client.post("/account/mfa/passkeys", headers={"X-CSRFToken": csrf},
                       json={"credential": credential, "name": name})
