"""The only place that wires Authlib: server.py lists the grants and endpoints."""

from .server import authorization_server, init_app

__all__ = ["authorization_server", "init_app"]
