"""Web plumbing shared by the pages, the protocol endpoints and the local API: the Flask class,
the WSGI layers, security headers and the request log, the cookie session, the body limit, and
which part renders the errors of which paths."""
