"""Names fixed by the specs and the contract."""

LOCAL_API_SCOPE = "IdentityServerApi"

#: the longest access-token lifetime a client may have (seconds); key retention must exceed it
ACCESS_TOKEN_LIFETIME_MAX = 86400

#: the path, under the issuer, of the local API's own problem type (RFC 9457): the 403 of a change
#: that needs a second factor; the page there documents it
MFA_REQUIRED_PROBLEM = "/problems/mfa-required"

#: the longest password any entry point takes (the pages, the local API, the seed file): a cap
#: that keeps Argon2's input sane, so PASSWORD_MAX_LENGTH may not be above it
PASSWORD_INPUT_MAX = 1024

OPENID = "openid"
PROFILE = "profile"
EMAIL = "email"
OFFLINE_ACCESS = "offline_access"

#: identity resources that always exist: name -> (display name, claims)
STANDARD_IDENTITY_RESOURCES = {
    OPENID: ("Your user identifier", ["sub"]),
    PROFILE: ("Your profile (name and user name)", ["name", "preferred_username"]),
    EMAIL: ("Your email address", ["email", "email_verified"]),
    OFFLINE_ACCESS: ("Offline access (stay signed in to the app)", []),
}

#: the prompt values the authorization endpoint answers (OpenID Connect Core 3.1.2.1), as discovery
#: lists them (prompt_values_supported); any other is refused, not ignored (oauth2/authorize.py)
PROMPT_VALUES = ("none", "login", "consent", "select_account")

GRANT_TYPES = ("authorization_code", "hybrid", "implicit", "client_credentials", "password")

#: response types each grant type allows at the authorization endpoint
RESPONSE_TYPES_BY_GRANT = {
    "authorization_code": {"code"},
    "hybrid": {"code id_token", "code token", "code id_token token"},
    "implicit": {"id_token", "id_token token"},
}
