"""Flask extensions, created unbound and attached in create_app."""

import ipaddress

from flask import current_app, g, request, session
from flask_limiter.util import get_remote_address
from flask_login import LoginManager as _LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFError, CSRFProtect as _CSRFProtect, same_origin
from sqlalchemy.orm import DeclarativeBase

from .current import current_application, current_request, current_request_context
from .rate_limiter import AppLimiter


class Base(DeclarativeBase):
    pass


class LoginManager(_LoginManager):
    def _update_remember_cookie(self, response):
        """Flask-Login's after-request step, skipped for an empty, unchanged session (every API
        call): it has nothing to do then. The session is peeked at on the request context, since
        reading it through `flask.session` marks it read and adds `Vary: Cookie` to the response
        (a Flask without `_session` on the context takes Flask-Login's own path)."""
        current = getattr(current_request_context(), "_session", None)
        if (current is not None and not current and not current.modified
                and not current_application().config.get("REMEMBER_COOKIE_REFRESH_EACH_REQUEST")):
            return response
        return super()._update_remember_cookie(response)

    def _load_user_from_remember_cookie(self, cookie):
        """Flask-Login's, and a remember-me cookie that names no live session (ended from another
        device, idle, too old) is marked for deletion: it signs nobody in, and would otherwise
        stay in the browser until it expires, looked up again with every request."""
        user = super()._load_user_from_remember_cookie(cookie)
        if user is None:
            session["_remember"] = "clear"
        return user

    def _clear_cookie(self, response):
        """Delete the remember-me cookie with the flags it was set with. Flask-Login's deletion
        carries no Secure, and a browser ignores a `__Secure-` or `__Host-` Set-Cookie without it
        (RFC 6265bis 4.1.3): the cookie stayed after a sign-out."""
        config = current_app.config
        response.delete_cookie(config["REMEMBER_COOKIE_NAME"], domain=config.get("REMEMBER_COOKIE_DOMAIN"),
                               path=config.get("REMEMBER_COOKIE_PATH", "/"),
                               secure=bool(config.get("REMEMBER_COOKIE_SECURE")),
                               httponly=bool(config.get("REMEMBER_COOKIE_HTTPONLY")),
                               samesite=config.get("REMEMBER_COOKIE_SAMESITE"))


class CSRFProtect(_CSRFProtect):
    def protect(self, *args, **kwargs):
        """Flask-WTF's check, answering GET, HEAD and OPTIONS first: they carry nothing to check,
        and Flask-WTF would look up the view's exemptions before asking the method."""
        if current_request().method not in current_application().config["WTF_CSRF_METHODS"]:
            return
        try:
            super().protect(*args, **kwargs)
        except CSRFError as err:
            # Flask-WTF checks the referrer after the token, against the host the proxy named, which
            # may lack the public port (nginx's $host; $server_port in a container published on
            # another port): a referrer of the issuer's own origin (FLASK_ISSUER) is the site's own.
            # Exemptions (the token endpoint, the local API) and the token stay Flask-WTF's checks.
            if err.description != _REFERRER_NOT_THE_HOST or not _from_issuer_origin():
                raise
            g.csrf_valid = True


#: Flask-WTF's reason for a referrer of another origin than the request's host, the last of its checks
_REFERRER_NOT_THE_HOST = "The referrer does not match the host."


def _from_issuer_origin() -> bool:
    issuer = (current_app.config.get("ISSUER") or "").rstrip("/")
    return bool(issuer and request.referrer and same_origin(request.referrer, issuer + "/"))


def client_network() -> str:
    """The rate limits' key for a client address: an IPv4 address as it is, an IPv6 one as its
    /64. An IPv6 customer is given a /64 and may send from any of its 2^64 addresses, so counted
    per address a per-IP limit would allow one client as many tries as it chose addresses."""
    address = get_remote_address()
    if ":" not in address:  # IPv4 (or no address): parsed for nothing on every request
        return address
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return address


db = SQLAlchemy(model_class=Base)
# Flask-Migrate (which imports Alembic) is attached only for commands: database.attach_migrate
login_manager = LoginManager()
csrf = CSRFProtect()
limiter = AppLimiter(
    key_func=client_network,
    default_limits=[lambda: current_app.config["RATELIMIT_DEFAULT"]],  # read per app, at request time
)


def sensitive_limit() -> str:
    """Per client IP wherever a password or a client secret is checked: sign-in, the password grant,
    password changes, failed client authentications (RATELIMIT_SENSITIVE)."""
    return current_app.config["RATELIMIT_SENSITIVE"]


def link_refused(response) -> bool:
    """Whether an answer of a link's page (reset, verification) counts toward RATELIMIT_SENSITIVE:
    a link that does not work (audited: a row kept a year), or any post of the reset form; not the
    opening of a working link, which people behind one carrier NAT address do at the general limit."""
    return request.method == "POST" or response.status_code >= 400

