"""One error shape per audience: OAuth JSON on /connect, a registered renderer (problem+json
on /localapi), a friendly page for people. Never a traceback."""

import math
import time

from flask import Flask, current_app, g, jsonify, render_template, request
from sqlalchemy.exc import DBAPIError, TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from ..plumbing.error_renderers import renderer_for
from ..extensions import db, limiter, login_manager
from ..oauth2.error_text import safe_description
from ..services import metrics
from ..services.key_encryption import UndecryptableKey

OAUTH_ERROR_BY_STATUS = {400: "invalid_request", 401: "invalid_client", 404: "invalid_request",
                         405: "invalid_request", 413: "invalid_request", 429: "slow_down",
                         503: "temporarily_unavailable"}

#: The /connect endpoints a person's browser is sent to: what they refuse before reading the
#: request (a method, a body too large, a rate limit, the database) is a page, as their own refusals are.
BROWSER_ENDPOINTS = ("/connect/authorize", "/connect/endsession")


def render_error(status: int, title: str, detail: str, headers: dict | None = None, form_url: str | None = None):
    render = renderer_for(request.path)  # a part's own shape (identity/plumbing/error_renderers.py)
    if render is not None:
        response = render(status, title, detail)
    elif _for_clients(request.path):
        response = jsonify(error=OAUTH_ERROR_BY_STATUS.get(status, "server_error"), error_description=safe_description(detail))
        response.status_code = status
        response.headers["Cache-Control"] = "no-store"
    elif _page_script():
        response = jsonify(error=detail)  # the shape the pages' JSON endpoints answer their scripts in
        response.status_code = status
    else:
        response = current_app.make_response((render_template("error.html", status=status, title=title, detail=detail,
                                                                     form_url=form_url), status))
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _for_clients(path: str) -> bool:
    """Whether the path is an endpoint that answers programs in OAuth's JSON shape."""
    return (path.startswith("/connect/") and path.rstrip("/") not in BROWSER_ENDPOINTS) or path.startswith("/.well-known/")


def _http_error(err: HTTPException):
    # the headers the status calls for, as Werkzeug's exception carries them: Allow on a 405,
    # Content-Range on a 416 (RFC 9110 section 15.5.17), a challenge or Retry-After given to it
    headers = {name: value for name, value in err.get_headers() if name.lower() != "content-type"}
    if err.code == 429:
        headers["Retry-After"] = str(_retry_after(err))
    form_url = _form_page() if _refused_form(err) else None
    return render_error(err.code or 500, err.name, _describe(err, form_url), headers, form_url=form_url)


def _page_script() -> bool:
    """Whether a page's script asked (passkeys.js: Accept: application/json), not a navigation."""
    return request.accept_mimetypes.best == "application/json"


def _refused_form(err: HTTPException) -> bool:
    return err.code == 400 and "CSRF" in (err.description or "")


def _form_page() -> str | None:
    """Where a form refused for its CSRF token can be opened again: the pages' forms post back to
    the page that shows them (the query, a pending request, included); None for a post-only action."""
    rule = request.url_rule
    if rule is None or "GET" not in (rule.methods or ()):
        return None
    return request.script_root + request.full_path.rstrip("?")


def _retry_after(err: HTTPException) -> int:
    """Seconds until the windows of the limits this request exceeded have all reset (when the
    limiter let it through again); the exceeded limit's whole window if the store cannot say."""
    try:
        resets = [limit.window[0] for limit in limiter.current_limits if limit.breached]
        if resets:
            return max(1, math.ceil(max(resets) - time.time()))
    except Exception:  # the store went away meanwhile: the limiter's fallback counts, not this header
        pass
    limit = getattr(getattr(err, "limit", None), "limit", None)
    try:
        return max(1, int(limit.get_expiry()))
    except (AttributeError, TypeError, ValueError):
        return 60


def _describe(err: HTTPException, form_url: str | None = None) -> str:
    if err.code == 404:
        return "There is nothing at this address."
    if err.code == 413:
        return "The request body is too large."
    if err.code == 429:
        return "Too many requests; try again later."
    if _refused_form(err) and _page_script():  # the page's token is of a session that ended since
        return ("This page has expired (you may have signed in or out in another tab). "
                "Reload it, then try again.")
    if _refused_form(err) and kept_no_cookie():
        return NO_COOKIE
    if _refused_form(err):  # a reload would post the same form, and its token, again
        if form_url:
            return "The form expired or was not sent from this site. Open it again, then send it."
        return "The form expired or was not sent from this site. Go back, reload that page and try again."
    return err.description or err.name


#: A refused form's page when the browser kept no cookie of this site (kept_no_cookie)
NO_COOKIE = ("Your browser sent no cookie with this form, and this site needs one to sign you in. "
             "Allow cookies for this site, then open the form again (if they are allowed, the site "
             "may not be served over https: tell its operator).")


def kept_no_cookie() -> bool:
    """Whether a refused form is one of this site's pages, posted by a browser that kept no
    cookie of this site (cookies blocked, or a Secure one on a page served over plain http):
    opening the form again would fail the same way. Not a form posted from another site (its
    cookie is SameSite=Lax: a cross-site post never carries it). Also asked by the forms exempt
    from the app-wide check, which check their token themselves (the reset form)."""
    return ("csrf_token" in request.form and current_app.config["SESSION_COOKIE_NAME"] not in request.cookies
            and request.headers.get("Sec-Fetch-Site", "same-origin") == "same-origin")


def _forget_user() -> None:
    """Render the error page as for an anonymous visitor: loading the user may be what failed."""
    g._login_user = login_manager.anonymous_user()


def _unavailable(logged: str, *args):
    """503 with Retry-After, the transaction ended and the page rendered anonymously; `logged`
    (with `args`) is the one line the log gets."""
    db.session.rollback()
    _forget_user()
    current_app.logger.error(logged, *args)
    return render_error(503, "Service Unavailable", "The service is temporarily unavailable; try again shortly.", {"Retry-After": "5"})


def _database_error(err: Exception):
    metrics.count_database_error()
    return _unavailable("database unavailable: %s", type(err).__name__)


def _undecryptable_key(err: Exception):
    """A stored key no KEY_ENCRYPTION_KEY opens: a setting to fix (its message names the key and
    what to do), in one line, and 503 as /readyz says, not a defect's traceback and 500."""
    return _unavailable("%s", err)


def _unexpected(err: Exception):
    current_app.logger.exception("unhandled error")
    _forget_user()
    try:
        db.session.rollback()
    except Exception:
        pass
    return render_error(500, "Internal Server Error", "Something went wrong on our side. Try again.")


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(DBAPIError, _database_error)
    app.register_error_handler(PoolTimeout, _database_error)
    app.register_error_handler(UndecryptableKey, _undecryptable_key)
    app.register_error_handler(Exception, _unexpected)
