"""A software authenticator for service-level tests: real WebAuthn registrations and assertions,
signed with an EC P-256 key made by `cryptography`, for any origin and RP id (so a test can
produce what another site's page would). The server verifies them with py_webauthn, unmocked."""

import hashlib
import json
import os
from base64 import urlsafe_b64encode

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, AT = 0x01, 0x04, 0x08, 0x40


def b64url(data: bytes) -> str:
    return urlsafe_b64encode(data).rstrip(b"=").decode()


class SoftKey:
    """One credential: its private key, id and use counter."""

    def __init__(self, *, sign_count: int = 0, backup_eligible: bool = False):
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(16)
        self.sign_count = sign_count
        self.backup_eligible = backup_eligible

    def cose_public_key(self) -> bytes:
        numbers = self.private.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def _auth_data(self, rp_id: str, flags: int, attested: bool = False) -> bytes:
        flags |= BE if self.backup_eligible else 0
        data = hashlib.sha256(rp_id.encode()).digest() + bytes([flags | (AT if attested else 0)])
        data += self.sign_count.to_bytes(4, "big")
        if attested:
            data += bytes(16) + len(self.credential_id).to_bytes(2, "big") + self.credential_id + self.cose_public_key()
        return data

    @staticmethod
    def _client_data(kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}).encode()

    def registration(self, challenge: str, *, origin: str, rp_id: str, flags: int = UP | UV) -> str:
        """navigator.credentials.create()'s answer, as JSON (attestation "none")."""
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": self._auth_data(rp_id, flags, True)})
        return json.dumps({
            "id": b64url(self.credential_id), "rawId": b64url(self.credential_id), "type": "public-key",
            "response": {"clientDataJSON": b64url(self._client_data("webauthn.create", challenge, origin)),
                         "attestationObject": b64url(attestation), "transports": ["internal"]},
            "clientExtensionResults": {},
        })

    def assertion(self, challenge: str, *, origin: str, rp_id: str, user_handle: bytes | None = None,
                  flags: int = UP | UV, count_step: int = 1) -> str:
        """navigator.credentials.get()'s answer, as JSON; the counter moves on by `count_step`."""
        self.sign_count += count_step
        auth_data = self._auth_data(rp_id, flags)
        client_data = self._client_data("webauthn.get", challenge, origin)
        signature = self.private.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        response = {"clientDataJSON": b64url(client_data), "authenticatorData": b64url(auth_data),
                    "signature": b64url(signature)}
        if user_handle is not None:
            response["userHandle"] = b64url(user_handle)
        return json.dumps({"id": b64url(self.credential_id), "rawId": b64url(self.credential_id),
                           "type": "public-key", "response": response, "clientExtensionResults": {}})
