"""Signing keys: the public JWKS, rotation, retirement, and one key set shared by every worker."""

import json

import pytest
from joserfc import jws
from sqlalchemy import select, update

from app import create_app
from identity.clock import now
from identity.extensions import db
from identity.models import Client, SigningKey, User
from identity.services import keys, tokens

JWKS = "/.well-known/openid-configuration/jwks"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def published(client) -> dict[str, dict]:
    response = client.get(JWKS)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return {key["kid"]: key for key in response.get_json()["keys"]}


def kid_of(token: str) -> str:
    return jws.extract_compact(token.encode()).protected["kid"]


def issue(app, scope="openid IdentityServerApi") -> str:
    """An access token for alice from the mobile client, signed with the app's current key."""
    with app.test_request_context():
        client = db.session.scalar(select(Client).where(Client.client_id == "mobile"))
        alice = db.session.scalar(select(User).where(User.username == "alice"))
        return tokens.issue_access_token(client, alice, scope).token


def verify(app, token: str) -> dict:
    with app.test_request_context():
        return tokens.verify_access_token(token)


def current_kids(app) -> set[str]:
    with app.app_context():
        return set(db.session.scalars(select(SigningKey.kid).where(SigningKey.retired_at.is_(None))))


@pytest.fixture
def rotate(monkeypatch):
    """rotate(app): a staged rotation that has taken effect, the key service's clock moved past
    the propagation time (tests/test_key_rotation.py covers the stages themselves)."""
    offset = 0

    def rotate_(app) -> None:
        nonlocal offset
        with app.app_context():
            keys.rotate()
        offset += app.config["SIGNING_KEY_PROPAGATION_SECONDS"] + 1
        monkeypatch.setattr(keys, "now", lambda: now() + offset)

    return rotate_


def same_database_app(app, **overrides):
    """A second app on the same database: another gunicorn worker or another instance."""
    names = ("TESTING", "ENVIRONMENT", "SECRET_KEY", "SQLALCHEMY_DATABASE_URI", "RATELIMIT_ENABLED",
             "SIGNING_KEY_RELOAD_SECONDS")
    return create_app({**{name: app.config[name] for name in names}, **overrides})


# --- the published keys ----------------------------------------------------------------------


def test_jwks_publishes_public_parts_only(client):
    keyset = published(client)

    assert {key["kty"] for key in keyset.values()} == {"RSA", "EC"}
    for kid, key in keyset.items():
        assert kid and key["use"] == "sig"
        assert key["alg"] in ("RS256", "ES256")
        assert not PRIVATE_MEMBERS & set(key), f"private members in {kid}"
        if key["kty"] == "RSA":
            assert key["alg"] == "RS256" and key["n"] and key["e"]
            assert len(key["n"]) >= 342  # 2048-bit modulus, base64url
        else:
            assert key["alg"] == "ES256" and key["crv"] == "P-256" and key["x"] and key["y"]


def test_keys_are_created_once_and_stored(app, client):
    first = published(client)
    second = published(client)

    assert first == second
    with app.app_context():
        rows = list(db.session.scalars(select(SigningKey)))
    assert sorted(r.alg for r in rows) == ["ES256", "RS256"]
    assert {r.kid for r in rows} == set(first)


def test_tokens_are_signed_with_a_published_key(app, client, seeded):
    token = issue(app)

    assert kid_of(token) in published(client)
    assert kid_of(token) in current_kids(app)
    assert verify(app, token)["sub"]


# --- rotation ------------------------------------------------------------------------------------


def test_rotation_signs_with_the_new_key_and_keeps_the_old_one_published(app, client, seeded, rotate):
    old_token = issue(app)
    old_kids = set(published(client))

    rotate(app)
    new_token = issue(app)

    assert kid_of(new_token) != kid_of(old_token)
    assert kid_of(new_token) in current_kids(app)
    keyset = published(client)
    assert old_kids < set(keyset)
    assert kid_of(new_token) in keyset
    assert verify(app, old_token)["jti"]
    assert verify(app, new_token)["jti"]


def test_emergency_rotate_command_changes_the_signing_key_at_once(app, runner, seeded):
    before = kid_of(issue(app))

    result = runner.invoke(args=["keys", "rotate", "--now"])

    assert result.exit_code == 0, result.output
    after = kid_of(issue(app))
    assert after != before and after in result.output


def test_a_key_retired_long_ago_is_no_longer_published(app, client, seeded, rotate):
    old_token = issue(app)
    old_kid = kid_of(old_token)
    old_kids = current_kids(app)  # the ES256 key that signed, and the RS256 one
    rotate(app)
    window = app.config["SIGNING_KEY_RETENTION_SECONDS"]
    with app.app_context():
        db.session.execute(update(SigningKey).where(SigningKey.kid.in_(old_kids)).values(retired_at=now() - window - 60))
        db.session.commit()

    keyset = published(client)

    assert old_kid not in keyset
    assert len(keyset) == 2
    with pytest.raises(tokens.InvalidToken):
        verify(app, old_token)


def test_keys_list_shows_retired_and_expired_keys(app, runner, seeded, rotate):
    old_kid = kid_of(issue(app))
    rotate(app)
    states = lambda: {line.split("\t")[0]: line.split("\t")[2] for line in runner.invoke(args=["keys", "list"]).output.splitlines()}  # noqa: E731
    assert states()[old_kid] == "published"

    with app.app_context():
        db.session.execute(update(SigningKey).where(SigningKey.kid == old_kid).values(retired_at=1))
        db.session.commit()

    assert states()[old_kid] == "expired"


def test_a_token_signed_by_an_unknown_key_is_refused(app, seeded):
    token = issue(app)
    foreign = keys._generate("ES256")
    header = jws.extract_compact(token.encode()).protected
    claims = json.loads(jws.extract_compact(token.encode()).payload)
    forged = jws.serialize_compact({**header, "kid": foreign.kid}, json.dumps(claims), foreign)
    same_kid = jws.serialize_compact(header, json.dumps(claims), foreign)

    for bad in (forged, same_kid):
        with pytest.raises(tokens.InvalidToken):
            verify(app, bad)


# --- every worker sees the same keys ------------------------------------------------------------


def test_two_workers_sign_with_the_same_current_key(app, client, seeded, rotate):
    other = same_database_app(app)
    try:
        assert kid_of(issue(app)) == kid_of(issue(other))
        assert other.test_client().get(JWKS).data == client.get(JWKS).data

        rotate(app)

        assert kid_of(issue(other)) == kid_of(issue(app))
        assert other.test_client().get(JWKS).data == client.get(JWKS).data
    finally:
        with other.app_context():
            db.engine.dispose()


def test_a_worker_with_a_cached_key_set_verifies_tokens_signed_with_a_new_key(app, seeded, rotate):
    other = same_database_app(app, SIGNING_KEY_RELOAD_SECONDS=3600)
    try:
        verify(other, issue(other))  # `other` has now loaded and cached the key set
        rotate(app)
        token = issue(app)

        assert verify(other, token)["jti"]
    finally:
        with other.app_context():
            db.engine.dispose()


def test_a_worker_refuses_a_token_it_verified_once_it_has_read_the_emergency_rotation(app, seeded, monkeypatch):
    """`keys rotate --now` by the operator's process: a worker that remembers having verified a
    token signed by a revoked key refuses it from its next read of the key table on, which is
    at most SIGNING_KEY_RELOAD_SECONDS away."""
    other = same_database_app(app, SIGNING_KEY_RELOAD_SECONDS=60)
    try:
        token = issue(app)
        assert verify(other, token)["jti"]  # `other` remembers the token now
        with app.app_context():
            keys.rotate(immediate=True)
        assert verify(other, token)["jti"]  # within its reload time: the ring it read before
        later = keys._monotonic() + 61
        monkeypatch.setattr(keys, "_monotonic", lambda: later)
        with pytest.raises(tokens.InvalidToken):
            verify(other, token)
    finally:
        with other.app_context():
            db.engine.dispose()

@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_signed_tokens_verify_with_an_independent_library(app, client, seeded, alg):
    """tokens.sign writes the JWS itself: PyJWT, given only the published JWKS, must accept it,
    and an ES256 signature must be the 64-byte R || S form (RFC 7518 §3.4), not DER."""
    import base64

    import jwt as pyjwt

    with app.test_request_context():
        token = tokens.sign({"iss": "https://localhost", "sub": "s", "n": 1}, alg, typ="at+jwt")
    header = pyjwt.get_unverified_header(token)
    assert header["alg"] == alg and header["typ"] == "at+jwt"
    jwk = published(client)[header["kid"]]
    claims = pyjwt.decode(token, pyjwt.PyJWK(jwk), algorithms=[alg], options={"verify_aud": False})
    assert claims == {"iss": "https://localhost", "sub": "s", "n": 1}
    signature = base64.urlsafe_b64decode(token.rsplit(".", 1)[1] + "==")
    assert len(signature) == (64 if alg == "ES256" else 256)
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(tampered, pyjwt.PyJWK(jwk), algorithms=[alg], options={"verify_aud": False})


def test_the_key_of_an_algorithm_no_longer_configured_retires_and_leaves_the_jwks(app, seeded, monkeypatch):
    """After ACCESS_TOKEN_SIGNING_ALG moved from ES256 to RS256 the ES256 key signed nothing more
    but was never retired: published for good, it and the tokens it signs were accepted until an
    emergency rotation. It now retires when a worker first loads the keys without it: its tokens
    verify for the retention time, then it leaves the JWKS. Configured again, the algorithm gets a
    new key rather than the retired one (which would leave the JWKS while it signed)."""
    es256_token = issue(app)  # ES256, the default
    es256_kid = kid_of(es256_token)
    moved = same_database_app(app, ACCESS_TOKEN_SIGNING_ALG="RS256")
    try:
        client = moved.test_client()
        assert es256_kid in published(client)  # retired now, still published
        assert verify(moved, es256_token)["sub"]
        assert es256_kid not in current_kids(moved)

        later = now() + moved.config["SIGNING_KEY_RETENTION_SECONDS"] + 1
        monkeypatch.setattr(keys, "now", lambda: later)
        with moved.app_context():
            keys._reload()
        assert es256_kid not in published(client)
        with pytest.raises(tokens.InvalidToken):
            verify(moved, es256_token)
    finally:
        with moved.app_context():
            db.engine.dispose()
    again = same_database_app(app)  # ES256 configured again, past the old key's retention
    try:
        with again.app_context():
            keys._reload()
        fresh = kid_of(issue(again))
        assert fresh != es256_kid and fresh in published(again.test_client())
    finally:
        with again.app_context():
            db.engine.dispose()
