"""The baseline: a bare Flask JSON endpoint, served by the same gunicorn settings as the app.

    gunicorn -c gunicorn.conf.py 'bench.bare_app:create_app()'

Every benchmark figure is also printed as a ratio to this endpoint's rate in the same run, so
results compare across machines.
"""

from flask import Flask, jsonify


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/bare")
    def bare():
        return jsonify(status="ok")

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    return app
