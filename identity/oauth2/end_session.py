"""RP-initiated logout: validate id_token_hint and post_logout_redirect_uri, then say where to go."""

from dataclasses import dataclass

from werkzeug.datastructures import CombinedMultiDict

from ..services import tokens
from ..services.clients import cached_client
from .decisions import ReplyTo, Respond, SignedOut
from .parameters import given, repeated_names


@dataclass
class EndSessionRequest:
    error: str | None = None
    redirect_uri: str | None = None
    state: str | None = None
    client_name: str | None = None
    needs_confirmation: bool = False


def _hint_claims(hint: str | None) -> dict | None:
    if not hint:
        return None
    try:
        return tokens.verify_id_token_hint(hint)
    except tokens.InvalidToken:
        return None


def check_end_session_request(args, form, principal) -> EndSessionRequest:
    """Accept a post-logout redirect only when registered for the enabled client the hint (or
    client_id) names. `args` and `form` are the query's and the body's parameters: one given
    twice over both is refused (RFC 6749 section 3.1), one given without a value is as if omitted."""
    args, form = given(args), given(form)
    repeated = repeated_names(args, form)
    if repeated:
        return EndSessionRequest(error="Parameters must not be repeated: " + ", ".join(repeated))
    values = CombinedMultiDict([args, form])
    hint, uri = values.get("id_token_hint"), values.get("post_logout_redirect_uri")
    claims = _hint_claims(hint)
    if hint and claims is None:
        return EndSessionRequest(error="The id_token_hint was not issued by this server.")
    aud = claims.get("aud") if claims else None
    client_id = (aud[0] if isinstance(aud, list) and aud else aud) or values.get("client_id")
    if claims and values.get("client_id") and values.get("client_id") != client_id:
        return EndSessionRequest(error="client_id does not match the id_token_hint.")
    client = cached_client(client_id)
    if client is not None and not client.enabled:
        client, uri = None, None  # signed out all the same, but nobody is sent back to a disabled client
    outcome = EndSessionRequest(state=values.get("state"), client_name=client.client_name if client else None)
    if uri:
        if client is None and client_id:  # as the other endpoints name an unknown client
            return EndSessionRequest(error="The client this request names is not registered.")
        if client is None:
            return EndSessionRequest(error="A post_logout_redirect_uri needs an id_token_hint or client_id.")
        if uri not in client.post_logout_redirect_uris:
            return EndSessionRequest(error="The post_logout_redirect_uri is not registered for this client.")
        outcome.redirect_uri = uri
    outcome.needs_confirmation = principal.is_authenticated and not _names_this_session(claims, principal)
    return outcome


def _names_this_session(claims: dict | None, principal) -> bool:
    """Whether the hint belongs to the signed-in person's current session, so the sign-out needs
    no question (RP-Initiated Logout 1.0 section 2: the OP MUST ask otherwise): their `sub`, and
    this session's public `sid` when the token names one (a token of an earlier session, which
    may be long expired and leaked, does not sign the new one out unasked)."""
    if claims is None or claims.get("sub") != principal.user.subject:
        return False
    return "sid" not in claims or claims["sid"] == principal.public_sid


def finish(outcome: EndSessionRequest) -> Respond | SignedOut:
    """After sign-out: back to the client (with its state, in the query) or to our signed-out page."""
    if outcome.redirect_uri:
        return Respond(ReplyTo(outcome.redirect_uri, "query"), [("state", outcome.state)] if outcome.state else [])
    return SignedOut(client_name=outcome.client_name)
