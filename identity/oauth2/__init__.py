"""The only place that wires Authlib: see server.py."""

from .server import init_app

__all__ = ["init_app"]
