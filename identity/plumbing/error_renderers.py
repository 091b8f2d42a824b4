"""Which part renders the errors of which paths.

A part with its own error shape (the local API: problem+json) registers a renderer for its
path prefix; the app's error handlers (web/errors.py) and the bearer check (oauth2/resource.py)
ask here, so neither the part nor they need to know one another.
"""

from collections.abc import Callable

from flask import Flask, current_app

#: render(status, title, detail) -> Response
Renderer = Callable[[int, str, str], object]

_KEY = "identity_error_renderers"


def register(app: Flask, prefix: str, render: Renderer) -> None:
    """Let `render` answer every error under `prefix` ("/part/"), and at the part's root ("/part") too."""
    app.extensions.setdefault(_KEY, []).append((prefix, prefix.rstrip("/"), render))


def renderer_for(path: str) -> Renderer | None:
    """The renderer registered for `path` (first match), or None for the app's own shapes."""
    for prefix, root, render in current_app.extensions.get(_KEY, ()):
        if path.startswith(prefix) or path == root:
            return render
    return None
