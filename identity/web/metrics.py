"""GET /metrics for the addresses in METRICS_ALLOWED_IPS, and each request's latency, as a WSGI layer.

Served here, before Flask, so a scrape goes through no rate limit, session or CSRF check, and
costs no sign-in or database read. Any other address gets what any unknown path gets from the
app: its 404 page. The client address is REMOTE_ADDR as ProxyFix (the outermost layer,
TRUST_PROXY_HOPS) has corrected it, as the rate limits and the audit log see it.

The latency of every other request is observed by Flask endpoint name: a teardown hook leaves
the matched rule's endpoint in the environ; a request answered before Flask (the cached discovery
document, a CORS preflight) is matched against the app's routes here, and the answer kept.
"""

from __future__ import annotations

import ipaddress
import time

from flask import Flask
from werkzeug.exceptions import HTTPException

from ..current import current_request
from ..services import metrics

PATH = "/metrics"
ENDPOINT_KEY = "identity.endpoint"
_MATCHED_MAX = 1000  # (method, path) pairs answered before Flask, remembered per worker


def allowed_networks(values) -> tuple:
    """METRICS_ALLOWED_IPS (a list, or a comma-separated string, of addresses and CIDR blocks) as networks."""
    if isinstance(values, str):
        values = values.split(",")
    return tuple(ipaddress.ip_network(str(value).strip(), strict=False) for value in values if str(value).strip())


def is_allowed(address: str | None, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def _remember_endpoint(_exc=None) -> None:
    """Leave the endpoint Flask matched (None: no route) where the layer reads it after the response."""
    request = current_request()
    rule = request.url_rule
    request.environ[ENDPOINT_KEY] = rule.endpoint if rule is not None else metrics.UNMATCHED


class Metrics:
    def __init__(self, app: Flask, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app
        self.networks = allowed_networks(app.config["METRICS_ALLOWED_IPS"])
        self.clock = time.perf_counter
        self.matched: dict[tuple, str] = {}

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == PATH and is_allowed(environ.get("REMOTE_ADDR"), self.networks):
            return self._scrape(environ, start_response)
        start = self.clock()
        try:
            return self.wsgi_app(environ, start_response)
        finally:
            metrics.observe_request(self._endpoint(environ), self.clock() - start)

    def _endpoint(self, environ) -> str:
        endpoint = environ.get(ENDPOINT_KEY)
        if endpoint is not None:
            return endpoint
        key = (environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))  # answered before Flask
        endpoint = self.matched.get(key)
        if endpoint is None:
            try:
                endpoint, _ = self.app.url_map.bind_to_environ(environ).match()
            except (HTTPException, LookupError):
                endpoint = metrics.UNMATCHED
            if len(self.matched) >= _MATCHED_MAX:
                self.matched.clear()
            self.matched[key] = endpoint
        return endpoint

    def _scrape(self, environ, start_response):
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Length", "0")])
            return [b""]
        body = metrics.exposition()
        start_response("200 OK", [("Content-Type", metrics.CONTENT_TYPE), ("Cache-Control", "no-store"),
                                  ("Content-Length", str(len(body)))])
        return [b"" if environ["REQUEST_METHOD"] == "HEAD" else body]


def layer(app: Flask, wsgi_app):
    """The metrics layer (its place: identity/plumbing/wsgi.py), and the hook that tells it the endpoint."""
    app.teardown_request(_remember_endpoint)
    return Metrics(app, wsgi_app)
