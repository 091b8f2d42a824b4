"""Security headers on every response, a request id, and structured request logs.

They are added by a WSGI layer around the whole app (pages, protocol endpoints, the local API,
the documents served without Flask, error pages), which sees each response's status and
headers once, as a list: no per-request Flask hooks, and no werkzeug header objects to
validate headers that are constants.
"""

import json
import logging
import mimetypes
import random
import re
import threading
import time
from datetime import datetime, timezone
from json.encoder import encode_basestring_ascii
from urllib.parse import urlsplit

from flask import Flask, has_request_context, request
from flask.logging import default_handler

from ..services.login_names import ascii_domain

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'{form_targets}"
)
DEFAULT_CSP = CSP.format(form_targets="")
#: an image (the icons) opened in a tab: the browser shows it in a document of its own whose <img>
#: and <body> carry inline style attributes, which the pages' style-src 'self' refused (errors in
#: the console); nothing of the server's is inline there, and the document may load and run nothing
IMAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox"
NO_STORE_PREFIXES = ("/account/", "/consent", "/connect/", "/localapi/", "/diagnostics")
HSTS = "max-age=31536000; includeSubDomains"

REQUEST_ID_KEY = "identity.request_id"
FORM_TARGETS_KEY = "identity.form_targets"
FRAME_SOURCES_KEY = "identity.frame_sources"

# (name, value, replace): a response's own value wins unless `replace`
_SECURITY_HEADERS = (
    ("X-Frame-Options", "DENY", False),
    ("X-Content-Type-Options", "nosniff", True),
    ("Referrer-Policy", "same-origin", False),  # same-origin: Flask-WTF checks the Referer on HTTPS
)
_NO_STORE_HEADERS = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))

log = logging.getLogger("identity.requests")


def allow_form_target(uri: str | None) -> None:
    """Let this page's form (and the redirects after it) reach a client's validated redirect URI.

    Browsers apply form-action to every redirect after a form post, so a sign-in or consent
    form that ends at the client needs the client's origin (or private-use scheme) listed.
    """
    if not uri:
        return
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https") and parts.netloc:
        source = origin_source(parts)
        if source is None:
            return
    elif parts.scheme and parts.scheme.replace(".", "").replace("-", "").replace("+", "").isalnum():
        source = f"{parts.scheme}:"
    else:
        return
    request.environ.setdefault(FORM_TARGETS_KEY, set()).add(source)


def origin_source(parts) -> str | None:
    """A CSP source for the URI's scheme://host[:port]: an international host in its IDNA form,
    as the browser names the origin it matches, and as a header can carry it (Latin-1 at most;
    例え.jp as written made the page's headers unsendable, a connection closed without an
    answer). None for a host with no single IDNA form, or a port that is not one.

    An IP-v6 literal (a native app's `http://[::1]:{port}/cb`, RFC 8252 section 7.3) is the
    scheme alone, `http:`: CSP's host-source cannot name one, and a browser ignores
    `http://[::1]:51234` as an invalid source, so the redirect after the sign-in post was blocked."""
    if (parts.hostname or "").count(":"):
        return f"{parts.scheme}:"
    if parts.netloc.isascii():
        return f"{parts.scheme}://{parts.netloc}"
    host = ascii_domain(parts.hostname or "")
    try:
        port = parts.port
    except ValueError:
        return None
    if host is None:
        return None
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def allow_frame_sources(uris: list[str]) -> None:
    """Let this page embed these URIs (the signed-out page's front-channel logout iframes): the
    CSP gets a frame-src listing exactly their origins; without any, framing stays 'self' only."""
    origins = set()
    for uri in uris:
        parts = urlsplit(uri)
        origin = origin_source(parts) if parts.scheme in ("http", "https") and parts.netloc else None
        if origin:
            origins.add(origin)
    if origins:
        request.environ.setdefault(FRAME_SOURCES_KEY, set()).update(origins)


def request_id() -> str | None:
    """The current request's id (as sent back in X-Request-Id), or None outside a request."""
    return request.environ.get(REQUEST_ID_KEY) if has_request_context() else None


def _incoming_request_id(environ) -> str:
    """The caller's X-Request-Id if it is sensible, else 16 new hex digits. An id only has to be
    unique, not secret (a caller may choose its own), so it comes from the process's seeded
    `random` (re-seeded in each forked worker), not a system call per request."""
    incoming = environ.get("HTTP_X_REQUEST_ID", "")
    return incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else f"{random.getrandbits(64):016x}"


class ResponseHeaders:
    """WSGI layer: request id, security and cache headers, and one JSON log line per request."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        rid = environ[REQUEST_ID_KEY] = _incoming_request_id(environ)

        def start(status, headers, exc_info=None):
            headers[:] = _with_security_headers(environ, status, headers, rid)
            if log.isEnabledFor(logging.INFO):
                _log_request(environ, status, rid, started)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)


def _replaced_names(no_store: bool, secure: bool) -> frozenset[str]:
    names = {"x-request-id", "x-content-type-options"}
    if no_store:
        names.update(("cache-control", "pragma"))
    if secure:
        names.add("strict-transport-security")
    return frozenset(names)


# the header names this layer sets itself, by (no_store, secure)
_REPLACED = {(no_store, secure): _replaced_names(no_store, secure) for no_store in (False, True) for secure in (False, True)}


def _personal(name: str, value: str) -> bool:
    """Whether a response header shows that the response is the caller's own: it sets a cookie,
    or it varies with the cookies (Flask says so whenever the view read the session, such as a
    page naming the signed-in user, with the sign-out form's CSRF token)."""
    return name == "set-cookie" or (name == "vary" and "cookie" in value.lower())


def _with_security_headers(environ, status: str, headers: list, rid: str) -> list:
    no_store = environ.get("PATH_INFO", "").startswith(NO_STORE_PREFIXES)
    secure = environ.get("wsgi.url_scheme") == "https"
    replaced = _REPLACED[no_store, secure]
    if status.startswith("204"):  # no content, so no content type (Flask adds text/html to every response)
        replaced = replaced | {"content-type"}
    kept, present, image = [], set(), False
    for header in headers:
        name = header[0].lower()
        if name not in replaced:
            kept.append(header)
            present.add(name)
            if name == "content-type":
                image = header[1].startswith("image/")
    if status.startswith("304") and "content-type" not in present:
        # a revalidation names no type, but its header fields replace the stored answer's (RFC 9111
        # section 4.3.4): an icon's 304 with the pages' policy took the icon's own away from it
        image = (mimetypes.guess_type(environ.get("PATH_INFO", ""))[0] or "").startswith("image/")
    # a page of the caller's own outside those paths (the home page, an error page, signed in):
    # stored by no cache either, unless the view said otherwise (looked at only there: the API's
    # paths are no-store already, and this runs on every response)
    if not no_store and "cache-control" not in present:
        no_store = any(_personal(name.lower(), value) for name, value in kept)
    if "content-security-policy" not in present and image:
        kept.append(("Content-Security-Policy", IMAGE_CSP))
    elif "content-security-policy" not in present:
        targets = environ.get(FORM_TARGETS_KEY)
        policy = CSP.format(form_targets="".join(" " + t for t in sorted(targets))) if targets else DEFAULT_CSP
        frames = environ.get(FRAME_SOURCES_KEY)
        if frames:
            policy += "; frame-src " + " ".join(sorted(frames))
        kept.append(("Content-Security-Policy", policy))
    for name, value, replace in _SECURITY_HEADERS:
        if replace or name.lower() not in present:
            kept.append((name, value))
    if secure:
        kept.append(("Strict-Transport-Security", HSTS))
    if no_store:
        kept.extend(_NO_STORE_HEADERS)
    kept.append(("X-Request-Id", rid))
    return kept


def _json_string(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


#: characters of the path and the method a request line keeps: no route is longer, and the line must
#: not grow with the request (unknown paths are not rate-limited; granian takes a 64 KiB request
#: line, and a character that is not ASCII is logged as six)
MAX_LOGGED_PATH = 256
MAX_LOGGED_METHOD = 32


def _cut(value: str, length: int) -> str:
    return value if len(value) <= length else value[:length] + "..."


def _log_request(environ, status: str, rid: str, started: float) -> None:
    # The path only: query strings can hold codes and tokens. The line is what json.dumps would
    # write for these six keys, with only the strings escaped (a third of json.dumps' cost).
    path = _cut(environ.get("PATH_INFO", ""), MAX_LOGGED_PATH).encode("latin-1", "replace").decode("utf-8", "replace")
    method = _cut(environ.get("REQUEST_METHOD", ""), MAX_LOGGED_METHOD)
    line = (f'{{"request_id": {_json_string(rid)}, "method": {_json_string(method)}, '
            f'"path": {_json_string(path)}, "status": {int(status[:3])}, '
            f'"ms": {round((time.perf_counter() - started) * 1000, 1)!r}, '
            f'"ip": {_json_string(environ.get("REMOTE_ADDR"))}}}')
    handler = _line_handler(log)
    if handler is not None:
        handler.write_line(line)
    else:  # someone else listens too (a test's caplog, an operator's handler): a full record
        log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, line, None, None))


class RequestLineHandler(logging.StreamHandler):
    """The request log's own handler: its records are already one formatted line each.

    With `flush_seconds` > 0 the lines are written in batches, as nginx's `access_log ...
    buffer= flush=` does: one write for many requests instead of a system call each, and no
    line later than `flush_seconds` (a timer writes what is pending once requests stop). The
    interpreter's exit (a worker's graceful stop or restart) runs logging's shutdown, which
    flushes; a worker killed outright loses at most that many seconds of lines.
    """

    MAX_PENDING = 256

    def __init__(self, stream=None, flush_seconds: float = 0.0):
        super().__init__(stream)
        self.flush_seconds = flush_seconds
        self._pending: list[str] = []
        self._oldest = 0.0
        self._timer: threading.Timer | None = None

    def write_line(self, line: str) -> None:
        with self.lock:
            if self.flush_seconds <= 0:
                self._write(line)
                return
            now = time.monotonic()
            if not self._pending:
                self._oldest = now
                self._start_timer()
            self._pending.append(line)
            if len(self._pending) >= self.MAX_PENDING or now - self._oldest >= self.flush_seconds:
                self._write_pending()

    def flush(self) -> None:
        with self.lock:
            self._write_pending()
            super().flush()

    def _write_pending(self) -> None:
        if self._pending:
            lines, self._pending = self._pending, []
            self._write("\n".join(lines))

    def _write(self, text: str) -> None:
        """Write and flush these lines; a failure (a closed pipe, a full disk) costs the lines, as
        logging's own handlers do (handleError), never the request that wrote them."""
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": text}))

    def _start_timer(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(self.flush_seconds, self._flush_from_timer)
            self._timer.name = "request-log-flush"
            self._timer.daemon = True
            self._timer.start()

    def _flush_from_timer(self) -> None:
        with self.lock:
            self._timer = None  # under the lock: a line added from now on starts a new timer
            self._write_pending()


def _line_handler(logger: logging.Logger) -> RequestLineHandler | None:
    """The request log's handler, if the lines go to it alone (no filters, no other handler,
    no propagation): then a line is written as is, without a LogRecord (most of the cost)."""
    if logger.propagate or logger.filters or len(logger.handlers) != 1:
        return None
    handler = logger.handlers[0]
    return handler if type(handler) is RequestLineHandler and not handler.filters else None


class RequestIdFilter(logging.Filter):
    """Copy the request id onto every record logged while a request is served."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            # UTC with its offset and milliseconds: a local time without an offset (the server's
            # TZ) could not be matched with other hosts' lines or read across a clock change
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _configure_app_log(app: Flask) -> None:
    """The app's own errors as JSON lines carrying the request id, like the request lines: the
    app's logger's, those of the services' loggers (identity.purge, identity.mail,
    identity.logout), which would otherwise reach stderr as bare text through logging's last
    resort (no server configures the root logger), and Flask-Limiter's warnings."""
    app.logger.addFilter(RequestIdFilter())
    if default_handler not in app.logger.handlers:  # the operator configured logging: theirs handles it all
        return
    if app.config["LOG_REQUESTS"]:
        default_handler.setFormatter(JsonFormatter())
    if not any(isinstance(f, RequestIdFilter) for f in default_handler.filters):
        default_handler.addFilter(RequestIdFilter())
    # Flask-Limiter's too: its logger has a NullHandler of its own, so without this its "Rate limit
    # storage unreachable - falling back to in-memory storage" (Redis down) was written nowhere
    for name in ("identity", "flask-limiter"):
        services = logging.getLogger(name)
        if default_handler not in services.handlers:
            services.addHandler(default_handler)


def _configure_request_log(app: Flask) -> None:
    """One JSON line per request on stderr (gunicorn collects it), unless turned off."""
    if not app.config["LOG_REQUESTS"] or log.handlers:
        return
    handler = RequestLineHandler(flush_seconds=float(app.config["LOG_REQUESTS_FLUSH_SECONDS"]))
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # the lines go to stderr once; the root logger's handlers would repeat them


_QUERY = re.compile(r"\?[^\s\x1b\"]*")
#: the query string in werkzeug's request line (an argument, "GET /path?query HTTP/1.1"): werkzeug
#: writes it percent-decoded, so a quote (a state's %22) is part of it, and it ends at a space
_QUERY_IN_REQUEST_LINE = re.compile(r"\?[^\s\x1b]*")


class QueryStringFilter(logging.Filter):
    """Drop query strings from the development server's request lines (`flask run`, werkzeug's
    log): like this app's own request log, the path only, since reset links, codes and tokens
    travel in query strings."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_QUERY_IN_REQUEST_LINE.sub("", arg) if isinstance(arg, str) else arg
                                for arg in record.args)
        if isinstance(record.msg, str) and "?" in record.msg:
            record.msg = _QUERY.sub("", record.msg)
        return True


#: the rate limits' keys that name a person or what they typed (the forgot-password form's user name,
#: a password typed there by mistake included, registration's address, the signed-in user, the
#: local API's token hash: identity/web/recovery.py, registration.py, email.py, api/limits.py)
_PERSONAL_LIMIT_KEY = re.compile(r"\A(reset-account|register-address|user|token):.*", re.DOTALL)


class LimitKeyFilter(logging.Filter):
    """Flask-Limiter records each refusal at INFO ("ratelimit 5 per 1 hour (reset-account:alice)
    exceeded at endpoint: ...") with the limit's key: keep its kind only (a client address stays,
    as in the request log), so a log at INFO or DEBUG holds no name, address or password typed."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (isinstance(args, tuple) and len(args) == 3 and isinstance(args[1], str)
                and str(record.msg).startswith("ratelimit ")):
            record.args = (args[0], _PERSONAL_LIMIT_KEY.sub(r"\1:...", args[1]), args[2])
        return True


def init_app(app: Flask) -> None:
    # Authlib logs issued tokens at DEBUG ("Issue token ..."): never let those records exist.
    logging.getLogger("authlib").setLevel(logging.INFO)
    limiter_log = logging.getLogger("flask-limiter")
    if not any(isinstance(f, LimitKeyFilter) for f in limiter_log.filters):
        limiter_log.addFilter(LimitKeyFilter())
    werkzeug_log = logging.getLogger("werkzeug")
    if not any(isinstance(f, QueryStringFilter) for f in werkzeug_log.filters):
        werkzeug_log.addFilter(QueryStringFilter())
    _configure_request_log(app)
    _configure_app_log(app)


def layer(app: Flask, wsgi_app):
    """The headers layer, around everything the app serves (its place: identity/plumbing/wsgi.py)."""
    return ResponseHeaders(wsgi_app)
