"""The objects behind Flask's context proxies, for code that runs on every request.

Each attribute read through `flask.request`, `current_app`, `g` or `request_ctx` costs about
1.2 µs: Werkzeug's proxy answers it with three Python calls after the ordinary lookup fails. The
object itself is one context-variable read away (about 0.2 µs). A local API request made 33 such
reads and a client_credentials token 48, about a tenth of the local API's own work
(docs/performance.md). Outside a request or app context these raise the proxies' RuntimeError.
"""

from flask import current_app, g, request
from flask.globals import request_ctx

#: the request being handled
current_request = request._get_current_object
#: the app handling it (or of the app context: commands, the purge thread)
current_application = current_app._get_current_object
#: the app context's `g`
context_globals = g._get_current_object
#: the request context (Flask-Login's session peek)
current_request_context = request_ctx._get_current_object
