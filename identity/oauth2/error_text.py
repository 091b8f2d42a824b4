"""Error descriptions that are always safe to send (RFC 6749 section 5.2).

`error_description` may hold only %x20-21 / %x23-5B / %x5D-7E. Authlib checks this when an
error is built and raises ValueError otherwise, so an error that echoes a request value (a
scope, a response_type, a grant_type with a quote, a backslash, a control or a non-ASCII
character) became a 500 instead of the OAuth error. Every OAuth error, whether Authlib or this
app builds it, passes through OAuth2Error.__init__, so that is the one place the text is made
safe: an unsafe character becomes `?`, and a long echo is cut short.
"""

from authlib.oauth2 import OAuth2Error

MAX_LENGTH = 300


def _safe(char: str) -> bool:
    code = ord(char)
    return 0x20 <= code <= 0x7E and char not in '"\\'


def safe_description(text):
    """`text` with every character RFC 6749 does not allow replaced by `?`, at most MAX_LENGTH long."""
    if not text or not isinstance(text, str):
        return text
    if len(text) > MAX_LENGTH:
        text = text[:MAX_LENGTH - 3] + "..."
    if all(_safe(c) for c in text):
        return text
    return "".join(c if _safe(c) else "?" for c in text)


_authlib_init = OAuth2Error.__init__


def _init(self, description=None, *args, **kwargs):
    _authlib_init(self, safe_description(description), *args, **kwargs)


def install() -> None:
    """Make every OAuth2Error's description safe as it is built (idempotent)."""
    if OAuth2Error.__init__ is not _init:
        OAuth2Error.__init__ = _init
