"""Authlib wiring (filled in by the OpenID Connect flows)."""

from flask import Flask


def init_app(app: Flask) -> None:
    pass
