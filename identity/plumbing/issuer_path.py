"""An issuer with a path (FLASK_ISSUER=https://id.example.com/tenant) is served at that path.

Discovery names every endpoint under the issuer, and OpenID Connect Discovery 1.0 section 4 puts
the document at the issuer plus /.well-known/openid-configuration; mails link under it too. The
provider still answers at the root of its host (docs/deployment.md, "Behind a reverse proxy": the
proxy passes the whole host on, unchanged), so this layer takes the issuer's path off a request
that starts with it: /tenant/connect/token is /connect/token. Its own pages (the sign-in page a
redirect names) stay at the root, and nothing else moves (no SCRIPT_NAME). A path the server
answers at the root is left as it is (an issuer at https://id.example.com/connect still has its
/connect/authorize, where a sign-in resumes).
"""

from urllib.parse import unquote_to_bytes, urlsplit

from flask import Flask
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect


class IssuerPath:
    def __init__(self, wsgi_app, path: str, routes):
        self.wsgi_app = wsgi_app
        self.path = path  # as WSGI spells PATH_INFO: the decoded bytes as latin-1, no trailing slash
        self.routes = routes  # the app's URL map, bound

    def _served_at_root(self, path_info: str, method: str) -> bool:
        try:
            self.routes.match(path_info, method)
        except (RequestRedirect, MethodNotAllowed):
            return True
        except NotFound:
            return False
        return True

    def __call__(self, environ, start_response):
        path_info = environ.get("PATH_INFO", "")
        if (path_info.startswith(self.path) and path_info[len(self.path):len(self.path) + 1] in ("", "/")
                and not self._served_at_root(path_info, environ.get("REQUEST_METHOD", "GET"))):
            environ["PATH_INFO"] = path_info[len(self.path):] or "/"
        return self.wsgi_app(environ, start_response)


def layer(app: Flask, wsgi_app):
    path = urlsplit((app.config.get("ISSUER") or "").rstrip("/")).path
    if not path:
        return wsgi_app
    return IssuerPath(wsgi_app, unquote_to_bytes(path).decode("latin-1"), app.url_map.bind("localhost"))
