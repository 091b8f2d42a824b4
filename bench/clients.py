"""Python clients: tokens for the wrk scenarios and correctness checks. The sign-in (6a) and
password-change (6b) loads are driven by wrk (bench/signin.py, bench/pwchange.py); the Python
flows here stay for `--signin-driver python` and `--password-driver python`, and as a readable
reference of each flow.

The load runs in several processes (default 2), each with a few threads and `requests`
sessions; each process reports its completions, latencies and its own CPU time, so the report
can say how much of the two cores the client itself took.
"""

from __future__ import annotations

import base64
import hashlib
import multiprocessing
import re
import resource
import secrets
import statistics
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests

from . import data

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


class FlowError(RuntimeError):
    pass


def _expect(response: requests.Response, status: int | tuple[int, ...], what: str) -> requests.Response:
    if response.status_code not in (status if isinstance(status, tuple) else (status,)):
        raise FlowError(f"{what}: expected {status}, got {response.status_code}: {response.text[:300]}")
    return response


# --- tokens for the wrk scenarios --------------------------------------------------------


def password_grant(url: str, username: str, password: str = data.USER_PASSWORD,
                   scope: str = f"openid {data.LOCAL_API_SCOPE}", session: requests.Session | None = None) -> dict:
    http = session or requests
    response = http.post(url + "/connect/token", data={"grant_type": "password", "username": username,
                                                        "password": password, "scope": scope},
                         headers={"Authorization": data.basic_auth(data.APP_CLIENT, data.APP_SECRET)}, timeout=30)
    return _expect(response, 200, f"password grant for {username}").json()


def refresh(url: str, token: str, session: requests.Session | None = None) -> requests.Response:
    http = session or requests
    return http.post(url + "/connect/token", data={"grant_type": "refresh_token", "refresh_token": token},
                     headers={"Authorization": data.basic_auth(data.APP_CLIENT, data.APP_SECRET)}, timeout=30)


def refresh_tokens(url: str, count: int) -> list[str]:
    """`count` fresh refresh-token families (password grants, spread over the seeded users)."""
    scope = f"openid offline_access {data.LOCAL_API_SCOPE}"

    def one(i: int) -> str:
        return password_grant(url, f"bench-user-{i % data.SIGNIN_USERS}", scope=scope)["refresh_token"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, range(count)))


def access_tokens_from_refresh(url: str, tokens: list[str], threads: int = 4) -> list[str]:
    """Exchange stored refresh tokens for access tokens (cheap: no password hash on the way)."""
    local = threading.local()

    def one(token: str) -> str:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return _expect(refresh(url, token, local.session), 200, "refresh for an access token").json()["access_token"]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, tokens))


# --- correctness checks next to the load -----------------------------------------------


def check_refresh_exactly_once(url: str) -> dict:
    """Rotation: a used token is refused and revokes its family; of racing uses exactly one wins."""
    scope = f"openid offline_access {data.LOCAL_API_SCOPE}"
    first = password_grant(url, data.MAIN_USER, scope=scope)["refresh_token"]
    rotated = refresh(url, first)
    second = rotated.json().get("refresh_token") if rotated.status_code == 200 else None
    replay = refresh(url, first)
    after_replay = refresh(url, second) if second else None
    racing = password_grant(url, data.MAIN_USER, scope=scope)["refresh_token"]
    barrier = threading.Barrier(8)

    def race(_):
        barrier.wait()
        return refresh(url, racing).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(race, range(8)))
    result = {
        "rotation": rotated.status_code == 200 and bool(second),
        "replay_refused": replay.status_code == 400 and replay.json().get("error") == "invalid_grant",
        "family_revoked_after_replay": after_replay is not None and after_replay.status_code == 400,
        "race_8_same_token_winners": statuses.count(200),
    }
    result["ok"] = (result["rotation"] and result["replay_refused"] and result["family_revoked_after_replay"]
                    and result["race_8_same_token_winners"] == 1)
    return result


def check_password_change_revokes(url: str) -> dict:
    """An access token issued before a password change is refused by /localapi and inactive at
    introspection, at once, though every worker had it in its bearer cache (BEARER_CACHE_SECONDS)."""
    token = password_grant(url, data.CHECK_USER)["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    before = [requests.get(url + "/localapi/account", headers=bearer, timeout=30).status_code for _ in range(20)]
    new_password = "changed-" + secrets.token_hex(8) + "-pass"
    change = requests.post(url + "/localapi/password", headers=bearer, timeout=30,
                           json={"current_password": data.USER_PASSWORD, "new_password": new_password,
                                 "confirm_password": new_password})
    after = [requests.get(url + "/localapi/account", headers=bearer, timeout=30).status_code for _ in range(20)]
    intro = requests.post(url + "/connect/introspect", data={"token": token}, timeout=30,
                          headers={"Authorization": data.basic_auth(data.APP_CLIENT, data.APP_SECRET)})
    active = intro.json().get("active") if intro.status_code == 200 else None
    result = {"before": sorted(set(before)), "change": change.status_code, "after": sorted(set(after)),
              "introspect_active_after": active}
    result["ok"] = (set(before) == {200} and change.status_code == 204 and set(after) == {401}
                    and active is False)
    return result


# --- scenario 6: sign-in and password change under load ------------------------------------


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def sign_in_once(url: str, username: str, http: requests.Session | None = None) -> None:
    """authorize -> login page -> login POST (which answers with the code; or authorize again) -> token,
    as a browser without JS.

    Each sign-in starts as a new browser: no cookies (the session object is reused only to keep
    the client's own CPU cost down; gunicorn's sync workers close every connection anyway).
    """
    http = http or requests.Session()
    http.cookies.clear()
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(8)
    params = {"client_id": data.SIGNIN_CLIENT, "response_type": "code", "scope": "openid profile",
              "redirect_uri": data.SIGNIN_REDIRECT, "state": state, "code_challenge": challenge,
              "code_challenge_method": "S256"}
    step = _expect(http.get(url + "/connect/authorize?" + urlencode(params), allow_redirects=False, timeout=30),
                   302, "authorize (signed out)")
    login_url = urljoin(url + "/", step.headers["Location"])
    page = _expect(http.get(login_url, timeout=30), 200, "login page")
    match = CSRF_RE.search(page.text)
    if not match:
        raise FlowError("login page: no csrf_token")
    form = {"csrf_token": match.group(1) or match.group(2), "username": username, "password": data.USER_PASSWORD}
    # 303 to the client after a POST (RFC 9700 4.12), or a redirect back to the authorization endpoint
    step = _expect(http.post(login_url, data=form, allow_redirects=False, timeout=30), (302, 303), "login POST")
    if not step.headers["Location"].startswith(data.SIGNIN_REDIRECT):  # sent back to the authorization endpoint
        step = _expect(http.get(urljoin(url + "/", step.headers["Location"]), allow_redirects=False, timeout=30),
                       302, "authorize (signed in)")
    location = step.headers["Location"]
    if not location.startswith(data.SIGNIN_REDIRECT):
        raise FlowError(f"authorize redirected to {location[:120]}")
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    if query.get("state") != state or "code" not in query:
        raise FlowError(f"authorize response without code/state: {sorted(query)}")
    token = _expect(http.post(url + "/connect/token", timeout=30, data={
        "grant_type": "authorization_code", "code": query["code"], "redirect_uri": data.SIGNIN_REDIRECT,
        "code_verifier": verifier, "client_id": data.SIGNIN_CLIENT}), 200, "code for tokens").json()
    if "id_token" not in token or "access_token" not in token:
        raise FlowError("token response without id_token/access_token")


def change_password_once(url: str, item: tuple[str, str], session: requests.Session) -> None:
    token, current = item
    new_password = "renewed-" + secrets.token_hex(8) + "-pass"
    response = session.post(url + "/localapi/password", headers={"Authorization": f"Bearer {token}"}, timeout=60,
                            json={"current_password": current, "new_password": new_password,
                                  "confirm_password": new_password})
    _expect(response, 204, "POST /localapi/password")


def _load_process(kind: str, url: str, threads: int, start_at: float, duration: float, items: list, proc_index: int,
                  out: multiprocessing.Queue) -> None:
    """One client process: `threads` threads repeat the flow until the deadline."""
    records: list[tuple[float, float]] = []  # (finished at, seconds)
    errors: list[str] = []
    work = deque(items)
    lock = threading.Lock()
    exhausted = threading.Event()
    deadline = start_at + duration

    def worker(thread_index: int) -> None:
        session = requests.Session()
        n = 0
        while True:
            now = time.time()
            if now >= deadline:
                return
            if kind == "signin":
                username = f"bench-user-{(proc_index * threads + thread_index + n) % data.SIGNIN_USERS}"
                n += 1
                begin = time.time()
                try:
                    sign_in_once(url, username, session)
                except (FlowError, requests.RequestException) as err:
                    with lock:
                        errors.append(str(err)[:300])
                    continue
            else:
                with lock:
                    if not work:
                        exhausted.set()
                        return
                    item = work.popleft()
                begin = time.time()
                try:
                    change_password_once(url, item, session)
                except (FlowError, requests.RequestException) as err:
                    with lock:
                        errors.append(str(err)[:300])
                    continue
            end = time.time()
            with lock:
                records.append((end, end - begin))

    while time.time() < start_at:
        time.sleep(min(0.01, max(0.0, start_at - time.time())))
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(duration + 120)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    out.put({"records": records, "errors": errors, "cpu_seconds": cpu, "exhausted": exhausted.is_set(),
             "exhausted_at": time.time() if exhausted.is_set() else None})


@dataclass
class FlowResult:
    completed: int
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    error_samples: list[str] = field(default_factory=list)
    client_cpu_seconds: float = 0.0
    exhausted: bool = False
    noise_cores: float = 0.0
    server_cpu_ms: float = 0.0
    db_cpu_ms: float = 0.0
    notes: list[str] = field(default_factory=list)
    reference_rate: float = 0.0  # scenario 6: the pure hash rate measured just before this run

    @property
    def failed(self) -> bool:
        return self.errors > 0

    @property
    def rps(self) -> float:
        return self.rate

    @property
    def server_cpu_per_op_ms(self) -> float:
        return (self.server_cpu_ms + self.db_cpu_ms) / self.completed if self.completed else 0.0


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[index]


def run_flow(kind: str, url: str, *, processes: int, threads: int, duration: float, items: list | None = None) -> FlowResult:
    """Run `kind` ("signin" or "password") from `processes` processes for `duration` seconds."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    start_at = time.time() + 0.5
    shares = [list((items or [])[i::processes]) for i in range(processes)]
    procs = [ctx.Process(target=_load_process, args=(kind, url, threads, start_at, duration, shares[i], i, out))
             for i in range(processes)]
    for p in procs:
        p.start()
    reports = [out.get(timeout=duration + 300) for _ in procs]
    for p in procs:
        p.join(30)
    records = [r for rep in reports for r in rep["records"]]
    errors = [e for rep in reports for e in rep["errors"]]
    exhausted = any(rep["exhausted"] for rep in reports)
    end = start_at + duration
    if exhausted:
        end = min(end, max([rep["exhausted_at"] for rep in reports if rep["exhausted_at"]] + [start_at + 0.001]))
    seconds = max(0.001, end - start_at)
    done = [r for r in records if r[0] <= end]
    latencies = [r[1] for r in done]
    result = FlowResult(
        completed=len(done), seconds=seconds, rate=len(done) / seconds,
        p50_ms=_percentile(latencies, 50) * 1000, p99_ms=_percentile(latencies, 99) * 1000,
        errors=len(errors), error_samples=sorted(set(errors))[:5],
        client_cpu_seconds=sum(rep["cpu_seconds"] for rep in reports), exhausted=exhausted,
    )
    if exhausted:
        result.notes.append(f"ran out of prepared users after {seconds:.1f}s")
    return result


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0
