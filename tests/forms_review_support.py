"""The forms review: a browser's form sent twice, at once or again after the first answered,
against a real 2-worker gunicorn server (tests/servers.py) on SQLite or the suite's PostgreSQL."""

from __future__ import annotations

import json
import re

import requests
from sqlalchemy import create_engine, text

from conftest import ALICE_PASSWORD, DEMO_SEED
from servers import csrf_from, run_together, seeded_server, sign_in

__all__ = ["ALICE_PASSWORD", "Browser", "Rows", "demo_server", "run_together", "twice_at_once", "twice_in_a_row"]


def demo_seed() -> dict:
    return json.loads(DEMO_SEED.read_text())


def demo_server(tmp_path, name: str, env: dict[str, str] | None = None):
    """The demo seed on a 2-worker gunicorn server (servers.seeded_server)."""
    return seeded_server(tmp_path, demo_seed(), name=name, env=env)


class Browser(requests.Session):
    """A browser: its cookies, and a form's post as the page shows it (the CSRF token read from it)."""

    def __init__(self, base_url: str):
        super().__init__()
        self.base_url = base_url

    def page(self, path: str) -> requests.Response:
        response = self.get(self.base_url + path, timeout=30)
        assert response.status_code == 200, (path, response.status_code, response.text[:500])
        return response

    def sign_in(self, username: str = "alice", password: str = ALICE_PASSWORD) -> requests.Response:
        response = sign_in(self, self.base_url, username, password)
        assert response.status_code in (302, 303), response.text[:2000]
        return response

    def form_post(self, path: str, data: dict, *, csrf_from_path: str | None = None, prefix: str = "",
                  hidden: tuple[str, ...] = ()):
        """The post a form of `csrf_from_path` (default `path`) makes, with its CSRF token and the
        `hidden` fields the page gave it: a callable, to send once or twice."""
        html = self.page(csrf_from_path or path).text
        body = {f"{prefix}csrf_token": csrf_from(html), **data}
        for name in hidden:
            found = re.search(r'<input[^>]*name="%s"[^>]*value="([^"]*)"' % re.escape(name), html)
            assert found, f"no {name} field in the page"
            body[name] = found.group(1)
        url = self.base_url + path

        def post() -> requests.Response:
            return self.post(url, data=body, timeout=60, allow_redirects=False,
                             headers={"Referer": self.base_url + (csrf_from_path or path)})
        return post


def twice_at_once(call) -> list[requests.Response]:
    results = run_together(call, call)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def twice_in_a_row(call) -> list[requests.Response]:
    return [call(), call()]


class Rows:
    """Reading the server's database from the test (its own short connections)."""

    def __init__(self, database_uri: str):
        self.engine = create_engine(database_uri)

    def scalar(self, sql: str, **params):
        with self.engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()

    def all(self, sql: str, **params):
        with self.engine.connect() as connection:
            return connection.execute(text(sql), params).all()

    def audited(self, event: str) -> int:
        return self.scalar("SELECT count(*) FROM audit_events WHERE event = :e", e=event)

    def events(self) -> list[str]:
        return [row[0] for row in self.all("SELECT event FROM audit_events ORDER BY id")]

    def close(self) -> None:
        self.engine.dispose()


def reseed(server, tmp_path) -> None:
    """The demo server's database emptied and the demo seed put back (alice's password, no
    sessions, no audit): each test of a module-wide server starts from the same state."""
    import json

    from servers import _empty
    if server.database_uri.startswith("postgresql"):
        _empty(server.database_uri)
    else:
        from app import create_app
        from conftest import close_connections, empty_database, make_config
        app = create_app(make_config(server.database_uri))
        empty_database(app)
        close_connections(app)
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(demo_seed()))
    server.cli(["seed", str(seed)])
