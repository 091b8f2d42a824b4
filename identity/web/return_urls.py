"""Where a page may send the browser next: only a local path on this server."""

from urllib.parse import parse_qs, urlsplit

from ..oauth2.decisions import RESUME_URL_MAX_LENGTH
from ..oauth2.response_modes import reply_to
from ..services.clients import cached_client, recorded_client_id


def safe_return_url(value: str | None) -> str | None:
    """Return the URL if it is a local path (no scheme, no host, no backslash tricks), else None."""
    if not value or len(value) > RESUME_URL_MAX_LENGTH:
        return None
    if not value.startswith("/") or value.startswith("//") or "\\" in value or any(c in value for c in "\r\n\t"):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value


def pending_query(return_url: str | None) -> str | None:
    """The query string of the authorization request a return URL resumes, or None for another URL."""
    if not return_url:
        return None
    parts = urlsplit(return_url)
    return parts.query if parts.path == "/connect/authorize" else None


def pending_authorization(return_url: str | None) -> dict:
    """The authorization request a return URL resumes, as a dict of its parameters (or empty)."""
    query = pending_query(return_url)
    return {k: v[0] for k, v in parse_qs(query).items()} if query else {}


def pending_client_id(return_url: str | None) -> str | None:
    """The pending request's client id as a sign-in records it, or None if it cannot name a client
    (services/clients.py is_client_id): a sign-in audits it and keeps it with the session."""
    return recorded_client_id(pending_authorization(return_url).get("client_id"))


def pending_client(return_url: str | None) -> tuple[str | None, str | None]:
    """The pending request's client name and its redirect URI, when registered for that client
    (from the worker's client snapshot, as the authorization endpoint reads it); nothing for a
    disabled client, whose request the authorization endpoint refuses."""
    params = pending_authorization(return_url)
    client = cached_client(params.get("client_id"))
    if client is None or not client.enabled:
        return None, None
    reply = reply_to(client, params)
    return client.client_name, reply.redirect_uri if reply is not None else None
