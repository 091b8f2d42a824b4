"""What a granian worker needs beyond `create_app()` (the launcher, granian_server.py, calls
`build()` in each worker; gunicorn.conf.py does the same things its own way).

- granian's WSGI environ starts from a copy of the worker's process environment
  (granian/wsgi.py: `environ = dict(os.environ) | scope`): every request would carry
  FLASK_SECRET_KEY, the database URI with its password, and any HTTP_* variable of the process
  as if the client had sent that header (HTTP_X_REQUEST_ID gave every request the same id;
  HTTP_X_FORWARDED_FOR, behind FLASK_TRUST_PROXY_HOPS, would give every client one address).
  The outermost layer removes the process's variables from each request's environ.
- granian ends a worker process through multiprocessing, which leaves with os._exit(): atexit
  handlers never run, so logging.shutdown() did not write the request log's last batch (up to
  FLASK_LOG_REQUESTS_FLUSH_SECONDS of lines were lost at every reload and shutdown). It runs as
  a multiprocessing finalizer instead, which that exit path does run; so does the fold of the
  worker's metrics files into the gone workers' (a recycled worker left its files for good).
- the start-up objects are frozen out of the garbage collector's reach (gunicorn.conf.py,
  post_worker_init, says why).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing.util
import os

#: keys a granian request always sets itself (its scope, or its fixed CGI and wsgi.* keys)
_REQUEST_KEYS = frozenset({
    "REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL", "SERVER_NAME", "SERVER_PORT",
    "REMOTE_ADDR", "GATEWAY_INTERFACE", "SCRIPT_NAME", "SERVER_SOFTWARE",
})
#: keys a request may or may not carry: a client's header (HTTP_*) or its body's type and length
_MAYBE_REQUEST = ("HTTP_", "CONTENT_TYPE", "CONTENT_LENGTH")


class WithoutProcessEnvironment:
    """A WSGI layer: the request's environ without the variables granian copied from os.environ.

    A variable that cannot come from a request is removed; an HTTP_* or CONTENT_* one only when
    the request holds the process's own value (a client's header of that name that differs is
    the client's, and stays)."""

    def __init__(self, wsgi_app, process_environment: dict[str, str] | None = None):
        self.wsgi_app = wsgi_app
        variables = dict(os.environ if process_environment is None else process_environment)
        names = [n for n in variables if n not in _REQUEST_KEYS and not n.startswith("wsgi.")]
        self.never_requests = tuple(n for n in names if not n.startswith(_MAYBE_REQUEST))
        self.maybe_requests = tuple((n, variables[n]) for n in names if n.startswith(_MAYBE_REQUEST))

    def __call__(self, environ, start_response):
        pop = environ.pop
        for name in self.never_requests:
            pop(name, None)
        for name, value in self.maybe_requests:
            if environ.get(name) == value:
                del environ[name]
        return self.wsgi_app(environ, start_response)


def build():
    """The app of one granian worker."""
    from app import create_app

    from ..services import metrics

    app = create_app()
    app.wsgi_app = WithoutProcessEnvironment(app.wsgi_app)
    multiprocessing.util.Finalize(None, logging.shutdown, exitpriority=0)
    # its metrics files folded into the gone workers' (gunicorn.conf.py's child_exit does it there)
    multiprocessing.util.Finalize(None, metrics.fold_own_files, exitpriority=0)
    gc.collect()
    gc.freeze()
    return app
