"""Checks on a protocol request's parameters as such, before Authlib reads them.

- RFC 6749 sections 3.1 and 3.2: parameters must not be included more than once (counted over
  the query and the body together); Authlib would silently take the first. This holds for the
  parameters the server reads (RECOGNIZED); unrecognized ones are ignored, as section 3.1 says.
- Section 3.3: `scope` is scope tokens (%x21 / %x23-5B / %x5D-7E) separated by single spaces;
  str.split() would also split on tabs, U+2028 and other white space and drop it.
- No NUL character anywhere: PostgreSQL refuses it in text, which would be a 5xx at the lookup.
- A `nonce` of at most NONCE_MAX_LENGTH characters, as IdentityServer's InputLengthRestrictions
  say: it is kept with the code, in an index (the replay check), and goes into the ID token; one
  of a few KiB broke PostgreSQL's index row limit, a 5xx after the sign-in.
"""

import re
from collections import Counter

from authlib.oauth2.rfc6749.errors import InvalidRequestError, InvalidScopeError
from werkzeug.datastructures import MultiDict

RECOGNIZED = frozenset((
    "client_id", "client_secret", "grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope",
    "username", "password", "token", "token_type_hint", "response_type", "response_mode", "state", "nonce", "prompt",
    "max_age", "code_challenge", "code_challenge_method", "id_token_hint", "login_hint", "ui_locales", "display",
    "acr_values", "claims", "request", "request_uri", "registration", "post_logout_redirect_uri",
))
NONCE_MAX_LENGTH = 300
SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*")


def given(parameters: MultiDict) -> MultiDict:
    """The parameters sent with a value: one sent without is as if omitted (RFC 6749 section 3.1),
    so `state=&state=mine` is one `state`, not a repeated one."""
    return MultiDict([(name, value) for name, value in parameters.items(multi=True) if value != ""])


def _pairs(*multidicts):
    for values in multidicts:
        yield from values.items(multi=True)


def repeated_names(*multidicts) -> list[str]:
    counts = Counter(name for name, _ in _pairs(*multidicts) if name in RECOGNIZED)
    return sorted(name for name, n in counts.items() if n > 1)


def has_nul(*multidicts) -> bool:
    """Whether a parameter's name or value holds a NUL character (PostgreSQL refuses one in a text)."""
    return any("\x00" in name or "\x00" in value for name, value in _pairs(*multidicts) if isinstance(value, str))


def parameter_error(*multidicts):
    """The OAuth error for these parameters (query args, form), or None when they are well formed."""
    pairs = list(_pairs(*multidicts))
    if has_nul(*multidicts):
        return InvalidRequestError("A parameter contains a NUL character.")
    repeated = repeated_names(*multidicts)
    if repeated:
        return InvalidRequestError("Parameters must not be repeated: " + ", ".join(repeated))
    nonce = next((value for name, value in pairs if name == "nonce"), None)
    if isinstance(nonce, str) and len(nonce) > NONCE_MAX_LENGTH:
        return InvalidRequestError(f"nonce must be at most {NONCE_MAX_LENGTH} characters")
    scope = next((value for name, value in pairs if name == "scope"), None)
    if scope and not SCOPE.fullmatch(scope):
        return InvalidScopeError("scope must be scope tokens separated by single spaces")
    return None


def request_parameter_error(request):
    """parameter_error for an Authlib request (the token, revocation and introspection endpoints)."""
    return parameter_error(request.args, request.form)
