"""The per-request shortcuts keep their behaviour: batched request log lines, no `Vary: Cookie`
on API answers, CSRF still checked on every form post, Flask's coroutine check remembered, and
Flask's context proxies read only a few times a request."""

import gc
import io
import json
import sys
import time

import werkzeug.local

from actions import AuthActions, OAuthActions
from conftest import ALICE_PASSWORD, csrf_token

from identity.plumbing.headers import RequestLineHandler


# --- the request log's batches ---------------------------------------------------------------


def test_request_lines_wait_for_the_batch_then_reach_the_stream():
    stream = io.StringIO()
    handler = RequestLineHandler(stream, flush_seconds=0.3)
    handler.write_line('{"n": 1}')
    handler.write_line('{"n": 2}')
    assert stream.getvalue() == "", "lines are held for one batch"
    deadline = time.monotonic() + 5
    while not stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stream.getvalue() == '{"n": 1}\n{"n": 2}\n', "the timer writes the batch once requests stop"
    handler.write_line('{"n": 3}')  # a new batch after the timer fired starts a new timer
    deadline = time.monotonic() + 5
    while stream.getvalue().count("\n") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stream.getvalue().splitlines() == ['{"n": 1}', '{"n": 2}', '{"n": 3}']


def test_a_full_batch_and_an_explicit_flush_write_at_once():
    stream = io.StringIO()
    handler = RequestLineHandler(stream, flush_seconds=60)
    for n in range(RequestLineHandler.MAX_PENDING):
        handler.write_line(json.dumps({"n": n}))
    assert len(stream.getvalue().splitlines()) == RequestLineHandler.MAX_PENDING, "a full batch is written"
    handler.write_line('{"n": "last"}')
    handler.flush()  # what logging.shutdown calls when a worker exits
    assert stream.getvalue().splitlines()[-1] == '{"n": "last"}'


def test_without_batching_each_line_is_written_at_once():
    stream = io.StringIO()
    handler = RequestLineHandler(stream, flush_seconds=0)
    handler.write_line('{"n": 1}')
    assert stream.getvalue() == '{"n": 1}\n'


# --- no Vary: Cookie where no cookie is read --------------------------------------------------


def test_local_api_and_token_answers_do_not_vary_on_cookie(client, seeded):
    assert AuthActions(client).login().status_code == 302
    token, _ = OAuthActions(client).code_flow(scope="openid IdentityServerApi")
    assert token.status_code == 200, token.get_data(as_text=True)
    access_token = token.get_json()["access_token"]
    api = client.application.test_client()  # a mobile app or a service: no cookies at all
    service_token = api.post("/connect/token", data={"grant_type": "client_credentials"},
                             auth=("service", "service-secret-change-me"))
    assert service_token.status_code == 200, service_token.get_data(as_text=True)
    assert "Vary" not in service_token.headers, service_token.headers
    account = api.get("/localapi/account", headers={"Authorization": f"Bearer {access_token}"})
    assert account.status_code == 200 and account.get_json()["username"] == "alice"
    assert "Vary" not in account.headers, account.headers


def test_pages_that_read_the_session_still_vary_on_cookie(client, seeded):
    page = client.get("/account/login")
    assert page.status_code == 200
    assert "Cookie" in page.headers.get("Vary", "")


def test_a_signed_in_browser_keeps_its_remember_cookie(client, seeded):
    page = client.get("/account/login")
    response = client.post("/account/login", data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                                   "username": "alice", "password": ALICE_PASSWORD,
                                                   "remember": "y"})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    assert any(c.startswith("idsrv.remember=") for c in response.headers.getlist("Set-Cookie")), \
        "Flask-Login's after-request step still sets the remember cookie"


# --- CSRF is checked before the method shortcut would matter ----------------------------------


def test_form_posts_without_a_csrf_token_are_refused(client, seeded):
    response = client.post("/account/login", data={"username": "alice", "password": ALICE_PASSWORD})
    assert response.status_code == 400
    me = client.get("/account/password")
    assert me.status_code == 302 and "/account/login" in me.headers["Location"], "no one was signed in"


def test_safe_methods_pass_without_a_token(client, seeded):
    assert client.get("/account/login").status_code == 200
    assert client.head("/account/login").status_code == 200


# --- Flask's coroutine check, remembered ------------------------------------------------------


def test_plain_functions_are_remembered_and_per_request_ones_released(app):
    def hook():
        return None

    assert app.ensure_sync(hook) is hook
    assert hook in app._plain_functions
    before = len(app._plain_functions)
    for _ in range(50):
        app.ensure_sync(lambda response: response)  # what after_this_request registers per request
    gc.collect()
    assert len(app._plain_functions) <= before, "per-request functions do not pile up"


def test_coroutine_functions_are_not_taken_for_plain_ones(app):
    async def view():
        return "x"

    try:
        wrapped = app.ensure_sync(view)
    except RuntimeError:  # Flask needs asgiref to run async views; without it, it says so
        wrapped = None
    assert wrapped is not view
    assert view not in app._plain_functions


# --- request ids ----------------------------------------------------------------------------


def test_new_request_ids_are_distinct_hex_and_a_sensible_incoming_one_is_kept(client):
    ids = [client.get("/healthz").headers["X-Request-Id"] for _ in range(50)]
    assert len(set(ids)) == 50
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
    assert client.get("/healthz", headers={"X-Request-Id": "edge-42"}).headers["X-Request-Id"] == "edge-42"
    too_long = "x" * 65
    assert client.get("/healthz", headers={"X-Request-Id": too_long}).headers["X-Request-Id"] != too_long


def test_request_log_lines_are_exactly_what_json_dumps_writes(monkeypatch):
    from identity.plumbing import headers

    lines = []

    class Collect:
        def write_line(self, line):
            lines.append(line)

    monkeypatch.setattr(headers, "_line_handler", lambda logger: Collect())
    cases = [("/a\"b\\c", 'quote"and\\slash', None), ("/caf\xc3\xa9/\u2603", "r-1", "::1"), ("/\x00", "\x7f", "10.0.0.1")]
    for path, rid, ip in cases:
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path}
        if ip:
            environ["REMOTE_ADDR"] = ip
        headers._log_request(environ, "201 CREATED", rid, time.perf_counter())
        entry = json.loads(lines[-1])
        expected = {"request_id": rid, "method": "POST",
                    "path": path.encode("latin-1", "replace").decode("utf-8", "replace"),
                    "status": 201, "ms": entry["ms"], "ip": ip}
        assert entry == expected
        assert lines[-1] == json.dumps(expected)


# --- Flask's context proxies, read a few times a request ------------------------------------


def _proxy_reads(monkeypatch) -> list:
    """Count every attribute or operator resolved through a Werkzeug context proxy (`request`,
    `current_app`, `g`, ...): about 1.2 µs each, where identity/current.py's objects cost 0.2."""
    reads = []
    resolve = werkzeug.local._ProxyLookup.__get__

    def counted(self, instance, owner=None):
        if instance is not None:
            caller = sys._getframe(1).f_code  # named in the failure message: who still reads a proxy
            reads.append("/".join(caller.co_filename.split("/")[-2:]) + ":" + caller.co_name)
        return resolve(self, instance, owner)

    monkeypatch.setattr(werkzeug.local._ProxyLookup, "__get__", counted)
    return reads


def test_the_local_api_and_the_token_endpoint_read_few_proxies(client, seeded, monkeypatch):
    """The hooks and services on these paths use the objects themselves; what is left is Flask's,
    Authlib's, Flask-WTF's and Flask-Limiter's own: 9 and 14 reads (33 and 48 before
    identity/current.py)."""
    # as in production: the worker caches on (the tests' settings turn them off), the issuer set
    client.application.config.update(SIGNING_KEY_RELOAD_SECONDS=60, CLIENT_CACHE_SECONDS=60, ISSUER="http://localhost")
    assert AuthActions(client).login().status_code == 302
    token, _ = OAuthActions(client).code_flow(scope="openid IdentityServerApi")
    assert token.status_code == 200, token.get_data(as_text=True)
    bearer = {"Authorization": f"Bearer {token.get_json()['access_token']}"}
    api = client.application.test_client()
    assert api.get("/localapi/account", headers=bearer).status_code == 200  # caches warmed
    reads = _proxy_reads(monkeypatch)
    account = api.get("/localapi/account", headers=bearer)
    assert account.status_code == 200 and account.get_json()["username"] == "alice"
    assert len(reads) <= 10, "\n".join(reads)
    del reads[:]
    service_token = api.post("/connect/token", data={"grant_type": "client_credentials"},
                             auth=("service", "service-secret-change-me"))
    assert service_token.status_code == 200, service_token.get_data(as_text=True)
    assert len(reads) <= 16, "\n".join(reads)
