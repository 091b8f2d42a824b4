"""Moved to granian_server.py beside app.py (the main process must not import the app)."""
from granian_server import *  # noqa: F401,F403
from granian_server import main, worker_app, environment, DEFAULTS, APP_TARGET  # noqa: F401
