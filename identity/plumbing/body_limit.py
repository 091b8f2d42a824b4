"""Streamed (chunked) request bodies get the same size limit as bodies with a Content-Length.

Werkzeug refuses a Content-Length over MAX_CONTENT_LENGTH with 413, but for a chunked body it
only stops reading at the limit: the request goes on with the body cut short (a form silently
loses its last fields). This WSGI layer reads such a body up to one byte past the limit and
hands it on as a plain body with its real Content-Length, so Werkzeug answers 413 exactly as for any other
oversized body (rendered by the app's error pages, OAuth errors or problem+json) and a body
within the limit is parsed whole. A chunked body that ends before its last chunk (the client
went, or sent a malformed chunk) gets the app's 400, as a body cut short before its
Content-Length does, not the server's bare 500.
"""

import io

from flask import Flask
from werkzeug.exceptions import ClientDisconnected
from werkzeug.wsgi import LimitedStream


class ChunkedBodyLimit:
    def __init__(self, wsgi_app, max_length: int):
        self.wsgi_app = wsgi_app
        self.max_length = max_length

    def __call__(self, environ, start_response):
        if ("HTTP_TRANSFER_ENCODING" in environ and not environ.get("CONTENT_LENGTH")
                and environ.get("wsgi.input_terminated")):  # the server de-chunks and ends the stream
            # at most one byte past the limit (werkzeug's stream stops there): enough to tell it is too large
            try:
                body = LimitedStream(environ["wsgi.input"], self.max_length + 1, is_max=True).read()
                length = len(body)
            except ClientDisconnected:  # the body ended early, or its chunks could not be read
                # an empty body one byte short of its length: the app's own parsing meets the early
                # end and answers 400, as for a body cut short before its Content-Length
                body, length = b"", 1
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(length)
            del environ["HTTP_TRANSFER_ENCODING"]  # de-chunked now; Werkzeug ignores a length beside it
        return self.wsgi_app(environ, start_response)


def layer(app: Flask, wsgi_app):
    """The body-limit layer when a limit is set (its place: identity/plumbing/wsgi.py)."""
    max_length = app.config.get("MAX_CONTENT_LENGTH")
    return ChunkedBodyLimit(wsgi_app, int(max_length)) if max_length else wsgi_app
