"""Every cookie the server sets, as a browser keeps and sends it (RFC 6265bis): attributes,
sizes and lifecycle. Each test names the defect it pins."""

import pytest

from actions import AuthActions

PREFIXED = {"SESSION_COOKIE_NAME": "__Host-idsrv.session", "REMEMBER_COOKIE_NAME": "__Host-idsrv.remember"}


def set_cookies(response, name: str) -> list[str]:
    """The Set-Cookie headers of a response for the cookie `name`."""
    return [v for v in response.headers.getlist("Set-Cookie") if v.startswith(name + "=")]


def attributes(header: str) -> set[str]:
    """A Set-Cookie header's attribute names, lower-cased (RFC 6265bis 5.6: case-insensitive)."""
    return {part.split("=", 1)[0].strip().lower() for part in header.split(";")[1:]}


@pytest.mark.database_independent
@pytest.mark.parametrize("app_config", [PREFIXED])
def test_a_prefixed_remember_cookie_is_deleted_with_secure(client, seeded):
    """A __Host- (or __Secure-) remember-me cookie's deletion must carry Secure: a browser ignores
    a prefixed Set-Cookie without it (RFC 6265bis 4.1.3, 5.7; Chromium does), so "keep me signed
    in" stayed in the browser after sign-out, or after signing in again without it."""
    auth = AuthActions(client)
    signed_in = auth.login(remember=True)
    assert set_cookies(signed_in, "__Host-idsrv.remember"), "no remember-me cookie was set"
    for label, step in (("sign-out", auth.logout), ("sign-in without remember", auth.login)):
        deleted = set_cookies(step(), "__Host-idsrv.remember")
        assert deleted, f"{label}: the remember-me cookie was not deleted"
        assert "secure" in attributes(deleted[0]), f"{label}: deleted without Secure, which a browser ignores: {deleted[0]}"
        assert set_cookies(auth.login(remember=True), "__Host-idsrv.remember")
