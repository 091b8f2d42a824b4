"""Flask's signed-cookie session, without its per-request cost for callers that send no cookie.

API clients (bearer tokens, client credentials) never send the session cookie, yet Flask's
interface builds a signing serializer for every request and reads seven cookie settings to
write nothing back. This one answers a cookieless request with an empty session straight
away, skips the cookie settings when an empty session is left unchanged, and builds the serializer once per
secret key. Cookies, their flags and their contents are exactly Flask's.
"""

from flask import Flask
from flask.sessions import SecureCookieSessionInterface


class LazyCookieSessionInterface(SecureCookieSessionInterface):
    def __init__(self):
        self._serializer = None
        self._serializer_keys = None

    def get_signing_serializer(self, app: Flask):
        keys = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        if self._serializer is None or keys != self._serializer_keys:
            self._serializer = super().get_signing_serializer(app)
            self._serializer_keys = keys
        return self._serializer

    def open_session(self, app: Flask, request):
        if "HTTP_COOKIE" not in request.environ or not request.cookies.get(self.get_cookie_name(app)):
            if not app.secret_key:
                return None  # as Flask: no key, no session
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session, response) -> None:
        if not session and not session.modified:
            # Flask's own outcome for an empty, unchanged session, without reading seven settings
            if session.accessed:
                response.vary.add("Cookie")
            return
        super().save_session(app, session, response)


def init_app(app: Flask) -> None:
    app.session_interface = LazyCookieSessionInterface()
