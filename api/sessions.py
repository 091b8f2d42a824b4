"""The local API's sessions and devices: the token user's browser sessions and app grants.

The same service as the page (services/devices.py); here the current entry is the caller's own
grant, the refresh-token family its access token was issued in.
"""

from flask import jsonify

from identity.constants import LOCAL_API_SCOPE
from identity.errors import NotFound
from identity.oauth2.resource import current_token, require_oauth
from identity.services import devices

from .problems import problem
from .schemas import SessionSchema
from .views import bp

session_schema = SessionSchema(many=True)


def _caller_entry() -> str | None:
    return devices.current_app_entry(current_token.user.id, current_token.client_id, current_token.claims["jti"])


@bp.get("/sessions")
@require_oauth(LOCAL_API_SCOPE, user_required=True)
def list_sessions():
    """List the token user's browser sessions and app grants, the caller's own grant first."""
    return jsonify(session_schema.dump(devices.list_entries(current_token.user.id, _caller_entry())))


@bp.delete("/sessions/<entry_id>")
@require_oauth(LOCAL_API_SCOPE, user_required=True)
def end_session(entry_id: str):
    """End one of the token user's entries; 404 for an id that is not theirs (or no longer live)."""
    try:
        devices.end_entry(current_token.user.id, entry_id)
    except NotFound:
        return problem(404, "Not Found", "No such session for this user.")
    return "", 204


@bp.delete("/sessions")
@require_oauth(LOCAL_API_SCOPE, user_required=True)
def end_other_sessions():
    """End every entry of the token user but the caller's own grant."""
    devices.end_all_but(current_token.user.id, _caller_entry())
    return "", 204
