"""The /localapi blueprint: the identity server's own API, for bearer tokens with scope IdentityServerApi."""

from flask import Flask


def init_app(app: Flask) -> None:
    pass
