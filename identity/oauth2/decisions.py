"""What the protocol code decided, for the web layer to render (as node-oidc-provider's interactions).

The authorization and end-session endpoints decide; they do not know pages, templates or the
names of other endpoints. identity/web/decisions.py turns each decision into a redirect or a page.
"""

from dataclasses import dataclass

#: The longest URL of a pending authorization request (/connect/authorize?<query>) that a page the
#: person is sent to first (sign-in, second factor, address verification) takes as its returnUrl
#: and resumes; the authorization endpoint answers a longer one itself (authorize.py).
RESUME_URL_MAX_LENGTH = 4000


@dataclass(frozen=True)
class ReplyTo:
    """Where and how an authorization request is answered: a redirect URI already validated for
    the client, and the response mode (query, fragment or form_post)."""

    redirect_uri: str
    response_mode: str


@dataclass(frozen=True)
class NeedsLogin:
    """Sign in (again), then resume the authorization request `params` (a dict of its parameters)."""

    params: dict
    reason: str  # "signed_out", "prompt_login", "max_age", "another_user" (id_token_hint) or "mfa"


@dataclass(frozen=True)
class NeedsSecondFactor:
    """The request asks for a second factor and the user has none: set one up, then resume the
    authorization request `params` (signing in again with both factors)."""

    params: dict
    client_name: str | None = None


@dataclass(frozen=True)
class NeedsConsent:
    """Ask the user to consent to the authorization request `params`."""

    params: dict


@dataclass(frozen=True)
class NeedsVerifiedEmail:
    """The client requires a verified email address: verify it, then resume the request `params`."""

    params: dict


@dataclass(frozen=True)
class ShowError:
    """A page for the person: the request cannot be answered at a validated redirect URI."""

    title: str
    description: str
    status: int = 400


@dataclass(frozen=True)
class Respond:
    """Send `params` (a list of pairs) to the client, as `reply` says."""

    reply: ReplyTo
    params: list


@dataclass(frozen=True)
class SignedOut:
    """The user is signed out and no client asked to be returned to."""

    client_name: str | None = None


Decision = NeedsLogin | NeedsSecondFactor | NeedsConsent | NeedsVerifiedEmail | ShowError | Respond | SignedOut
