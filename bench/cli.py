"""`python -m bench`: the benchmark suite of issue 6.

Starts the app under its production server (gunicorn with gunicorn.conf.py, 2 sync workers by
default; --server granian for granian through granian_server.py, or gunicorn's gthread workers)
on a free loopback port, on a fresh SQLite file (or a fresh schema in the PostgreSQL database given with
--database), seeds its own clients and users, and measures each scenario after a warm-up,
--runs times for --duration seconds, next to a bare Flask JSON endpoint served the same way:

    bare  GET /bare on bench/bare_app.py (the baseline; measured first and last)
    1     GET /localapi/account with a valid bearer token
    2     POST /connect/token, client_credentials, hashed client secret
    2n    the same request to node-oidc-provider in one Node.js process, same client and signing
          algorithm (bench/node; the reference for scenario 2's second target)
    3     POST /connect/token, refresh_token with rotation (a chain per connection)
    4     GET /.well-known/openid-configuration (4a) and its JWKS (4b)
    5     POST /connect/introspect
    6     full sign-in (authorize, login form, code, token; driven by wrk and bench/lua/signin.lua)
          and POST /localapi/password per second, each run next to a run of the pure Argon2id rate in
          as many processes just before it (the ratio is the median of the runs' ratios)
    7     growth (opt-in, --growth): 1 and 3 at ~1,000 stored refresh tokens, then again at
          1,000,000 refresh tokens and 100,000 users
    8     overload: 1 and 2 again at 4 x --connections (1x4, 2x4): no errors, p99 within 3 x the
          standard run's
    bare-sync  the bare endpoint under gunicorn's sync workers, whatever --server is: the local
          API's reference (as fast as a hello-world on the server most Flask apps use)

With --servers, the whole run is repeated under each server named (same scenarios, a fresh
database each), and a table puts them side by side.

    python -m bench                               # SQLite, scenarios 1-6
    python -m bench --scenarios 1,3 --growth      # with scenario 7
    python -m bench --database postgresql+psycopg://identity:identity@127.0.0.1:5432/identity_bench
    python -m bench --json out.json --png out.png
    python -m bench --servers granian,granian:t2,granian:bp4,gunicorn-sync,gunicorn-gthread:t4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import clients, data, kdf, node_reference, pwchange, report, signin, system
from .scenarios import Scenario
from .server import APP_SPEC, BARE_SPEC, ROOT, Server, ServerConfig, ServerError, base_env, flask_cli, free_port
from .wrk import Wrk, WrkError, ensure_wrk

ALL_SCENARIOS = ["1", "2", "3", "4", "5", "6", "8"]
OVERLOAD_FACTOR = 4  # scenario 8: connections x this
# scenario 2's request, to the app and to node-oidc-provider alike
CLIENT_CREDENTIALS = {
    "headers": {"Authorization": data.basic_auth(data.SERVICE_CLIENT, data.SERVICE_SECRET),
                "Content-Type": "application/x-www-form-urlencoded"},
    "body": f"grant_type=client_credentials&scope={data.LOCAL_API_SCOPE}",
}
SECRET_KEY = "bench-secret-key-not-for-production-0123456789"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(ALL_SCENARIOS),
                        help="comma-separated scenarios to run (1-8; 7 is the growth scenario, 8 the overload) [%(default)s]")
    parser.add_argument("--growth", action="store_true", help="also run scenario 7 (adds ~1,000,000 rows; minutes)")
    parser.add_argument("--database", default="sqlite",
                        help="'sqlite' (a fresh file in a temporary directory) or a postgresql+psycopg:// URI; "
                             "the benchmark works in a schema of its own there and drops it at the end [%(default)s]")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes [%(default)s]")
    parser.add_argument("--server", default="gunicorn-sync",
                        help="the server: granian, gunicorn-sync or gunicorn-gthread, with :tN for N Python threads "
                             "per worker and (granian) :bpN for a backpressure of N per worker [%(default)s]")
    parser.add_argument("--servers", default=None,
                        help="comma-separated --server values: repeat the whole run under each, then compare")
    parser.add_argument("--duration", type=float, default=5, help="seconds per measured run [%(default)s]")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per scenario [%(default)s]")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up before each scenario [%(default)s]")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections [%(default)s]")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads [%(default)s]")
    parser.add_argument("--flow-processes", type=int, default=2,
                        help="client processes for scenario 6, and processes of the pure hash rate [%(default)s]")
    parser.add_argument("--flow-threads", type=int, default=2, help="threads per client process in scenario 6 [%(default)s]")
    parser.add_argument("--signin-driver", choices=["wrk", "python"], default="wrk",
                        help="scenario 6a's client: wrk with bench/lua/signin.lua (about 1 ms of client CPU per "
                             "sign-in), or the Python clients of --flow-processes x --flow-threads (7.5 ms) [%(default)s]")
    parser.add_argument("--signin-connections", type=int, default=4,
                        help="scenario 6a with wrk: connections, one wrk thread each [%(default)s]")
    parser.add_argument("--password-driver", choices=["wrk", "python"], default="wrk",
                        help="scenario 6b's client: wrk with bench/lua/pwchange.lua, or the Python clients of "
                             "--flow-processes x --flow-threads (1.5 ms of client CPU a change) [%(default)s]")
    parser.add_argument("--password-connections", type=int, default=4,
                        help="scenario 6b with wrk: connections, one wrk thread each [%(default)s]")
    parser.add_argument("--no-node-reference", action="store_true",
                        help="with scenario 2, do not measure node-oidc-provider (bench/node, installed with npm ci) "
                             "as its reference")
    parser.add_argument("--access-token-alg", choices=["ES256", "RS256"],
                        help="FLASK_ACCESS_TOKEN_SIGNING_ALG for the server (default: the app's own setting)")
    parser.add_argument("--app-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="an app setting for the server, passed as FLASK_NAME=VALUE (repeatable), "
                             "e.g. --app-setting LOG_REQUESTS=false")
    parser.add_argument("--max-requests", type=int, default=0,
                        help="GUNICORN_MAX_REQUESTS for the servers; gunicorn.conf.py's production default (2000) "
                             "recycles a worker every second at these rates, so the benchmark turns it off [%(default)s]")
    parser.add_argument("--access-log", action="store_true", help="keep gunicorn's access log on (off by default)")
    parser.add_argument("--startup-samples", type=int, default=3,
                        help="gunicorn starts timed for 'start to first 200 on /healthz' [%(default)s]")
    parser.add_argument("--growth-refresh-tokens", type=int, default=1_000_000, help=argparse.SUPPRESS)
    parser.add_argument("--growth-users", type=int, default=100_000, help=argparse.SUPPRESS)
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="before each run, wait up to this many seconds for other processes on the machine "
                             "to use less than --quiet-threshold cores (default 10, or 0 with a negative --nice, "
                             "since the others then take the cores only while the benchmark pauses)")
    parser.add_argument("--quiet-threshold", type=float, default=0.3,
                        help="cores that other processes may keep busy during a run before it counts as noisy [%(default)s]")
    parser.add_argument("--noisy-retries", type=int, default=3,
                        help="per scenario, how many noisy runs are set aside and repeated [%(default)s]")
    parser.add_argument("--nice", type=int, default=0,
                        help="change this process's scheduling priority by N before starting (inherited by gunicorn, "
                             "wrk and the clients); a negative N (root only) keeps other work on a shared machine "
                             "from taking the cores mid-run; the PostgreSQL backends serving the run's database "
                             "on this machine get the same priority before each measured run [%(default)s]")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--png", metavar="FILE", help="write a chart of the results (matplotlib)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, SQLite files)")
    args = parser.parse_args(argv)
    selected = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in selected if s not in ALL_SCENARIOS + ["7"]]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    if args.growth and "7" not in selected:
        selected.append("7")
    if "7" in selected:
        args.growth = True
    args.selected = selected
    try:
        args.server_configs = [ServerConfig.parse(text) for text in (args.servers or args.server).split(",") if text.strip()]
    except ValueError as err:
        parser.error(str(err))
    args.server_config = args.server_configs[0]
    if args.quiet_wait is None:
        args.quiet_wait = 0 if args.nice < 0 else 10
    if args.connections < 1 or args.threads < 1 or args.runs < 1 or args.duration < 1 or args.signin_connections < 1 \
            or args.password_connections < 1:
        parser.error("--connections, --threads, --signin-connections, --runs and --duration must be at least 1")
    return args


def hold_to_pure(s: Scenario) -> None:
    """Scenario 6's ratio: the median of each run's rate over the pure rate measured just before
    it (Bench.paired_with_pure); the reference's rate is the median of those pure runs."""
    pairs = [(r.rate, r.reference_rate) for r in s.runs if r.reference_rate]
    s.reference["rate"] = round(clients.median([pure for _, pure in pairs]), 2)
    s.reference["pure_runs"] = [round(pure, 2) for _, pure in pairs]
    ratios = [rate / pure for rate, pure in pairs]
    s.reference["ratio_runs"] = [round(ratio, 3) for ratio in ratios]
    s.reference["ratio"] = round(clients.median(ratios), 3) if ratios else None


def chain_invariants(db: data.Database) -> dict:
    """After the refresh load, in the database: no family was revoked (no token was presented twice,
    no chain broke) and no family forked (no token was redeemed twice)."""
    forked = db.scalar("SELECT count(*) FROM (SELECT family_id FROM refresh_tokens WHERE consumed_at IS NULL "
                       "AND revoked_at IS NULL GROUP BY family_id HAVING count(*) > 1) AS f")
    revoked = db.scalar("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NOT NULL")
    rotated = db.scalar("SELECT count(*) FROM refresh_tokens WHERE consumed_at IS NOT NULL")
    return {"forked_families": forked, "revoked_under_load": revoked, "rotations_stored": rotated,
            "ok": forked == 0 and revoked == 0}


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-"))
        self.servers: list[Server] = []
        self.databases: list[data.Database] = []
        self.results: dict = {}
        self.scenarios: dict[str, Scenario] = {}
        self.bare = Scenario("bare", "GET /bare (bare Flask JSON endpoint)")
        self.bare_sync: Scenario | None = None  # the bare endpoint under gunicorn sync, when --server is another
        self.watch_db: str | None = None

    # --- set-up -----------------------------------------------------------------------
    def gunicorn_env(self) -> dict[str, str]:
        return {"GUNICORN_MAX_REQUESTS": str(self.args.max_requests),
                "GUNICORN_ACCESS_LOG": "-" if self.args.access_log else "off",
                "GUNICORN_LOG_LEVEL": "warning"}

    def app_env(self, db: data.Database, port: int) -> dict[str, str]:
        env = {
            "FLASK_SECRET_KEY": SECRET_KEY,
            "FLASK_SQLALCHEMY_DATABASE_URI": db.uri,
            "FLASK_ENVIRONMENT": "development",  # cookies without Secure: the benchmark talks plain HTTP
            "FLASK_RATELIMIT_ENABLED": "false",
            "FLASK_ISSUER": f"http://127.0.0.1:{port}",
        }
        if self.args.access_token_alg:
            env["FLASK_ACCESS_TOKEN_SIGNING_ALG"] = self.args.access_token_alg
        for item in self.args.app_setting:
            name, _, value = item.partition("=")
            env["FLASK_" + name.strip().upper()] = value
        return env

    def prepare_app(self, name: str) -> tuple[data.Database, Server]:
        """A fresh database, seeded by the operator's CLI, and a (not yet started) app server on it."""
        db = data.Database.create(self.args.database, self.workdir, name)
        self.databases.append(db)
        if db.kind == "postgresql":
            self.watch_db = db.database_name
        port = free_port()
        env = self.app_env(db, port)
        seed = data.write_seed(self.workdir)
        log(f"  seeding {db.label} with {seed.name} (flask --app app seed)")
        flask_cli(["seed", str(seed)], base_env(env))
        server = Server(APP_SPEC, workers=self.args.workers, log_path=self.workdir / f"server-{name}.log",
                        app_env=env, gunicorn_env=self.gunicorn_env(), port=port, name=name, nice=self.args.nice,
                        config=self.args.server_config)
        self.servers.append(server)
        return db, server

    def app_settings(self, env: dict[str, str]) -> dict:
        """The effective settings of the app, read by the app itself with the server's environment."""
        names = ["ARGON2_TIME_COST", "ARGON2_MEMORY_COST_KIB", "ARGON2_PARALLELISM", "ACCESS_TOKEN_SIGNING_ALG",
                 "ID_TOKEN_SIGNING_ALG", "RATELIMIT_ENABLED", "LOG_REQUESTS", "SQLALCHEMY_ENGINE_OPTIONS", "BEARER_CACHE_SECONDS"]
        names += [item.partition("=")[0].strip().upper() for item in self.args.app_setting]
        code = ("import json, sys; from app import create_app; c = create_app().config; "
                f"print(json.dumps({{k: c.get(k) for k in {names!r}}}, default=str))")
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=base_env(env), capture_output=True,
                                text=True, timeout=120)
        if result.returncode != 0:
            raise ServerError(f"reading the app's settings failed:\n{result.stderr[-2000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    def start(self, server: Server) -> float:
        seconds = server.start()
        server.wait_for_workers()
        return seconds

    # --- measuring ---------------------------------------------------------------------
    def quiet(self) -> float:
        if self.args.quiet_wait <= 0:
            return 0.0
        return system.wait_for_quiet(self.args.quiet_wait, self.args.quiet_threshold, self.watch_db, log)

    def wrk_scenario(self, scenario: Scenario, server: Server, path: str, *, script: str | None = None,
                     headers: dict | None = None, body: str | None = None, args_fn=None, after_fn=None,
                     wrk_threads: int | None = None, connections: int | None = None) -> Scenario:
        a = self.args
        warm = self.wrk.run(server.url + path, duration=a.warmup, script=script, headers=headers, body=body,
                            args=args_fn() if args_fn else None, threads=wrk_threads, connections=connections)
        if after_fn:
            after_fn(warm)
        scenario.warmup_errors += warm.errors

        def one_run():
            run_args = args_fn() if args_fn else None
            result = self.measured(server, lambda: self.wrk.run(
                server.url + path, duration=a.duration, script=script, headers=headers, body=body, args=run_args,
                threads=wrk_threads, connections=connections))
            if after_fn:
                after_fn(result)
            return result

        def describe(result) -> str:
            line = (f"{result.rps:8.0f} req/s  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms"
                    f"  errors {result.errors}  server CPU {result.server_cpu_per_op_ms:.3f} ms/req"
                    f"  others' load {result.noise_cores:.2f} cores" + (" FAILED" if result.failed else ""))
            if result.failed:
                line += f"\n      statuses {result.statuses} socket errors {result.socket_errors}"
            return line

        return self.collect(scenario, one_run, describe)

    def collect(self, scenario: Scenario, one_run, describe) -> Scenario:
        """--runs measured runs. A run during which other processes kept more than --quiet-threshold cores
        busy is set aside and repeated, at most --noisy-retries times per scenario."""
        retries = self.args.noisy_retries
        target = len(scenario.runs) + self.args.runs  # the bare scenario is measured twice: first and last
        while len(scenario.runs) < target:
            self.quiet()
            result = one_run()
            if result.noise_cores > self.args.quiet_threshold and retries > 0 and not result.failed:
                retries -= 1
                scenario.discarded.append(result)
                log(f"    set aside (others kept {result.noise_cores:.2f} cores busy): {describe(result)}")
                continue
            scenario.runs.append(result)
            log(f"    run {len(scenario.runs)}: {describe(result)}")
        return scenario

    def measured(self, server: Server, run):
        """Run one measured run, noting how busy the rest of the machine was and what the server spent."""
        watch = system.CpuWatch(self.watch_db)
        cpu = system.ServerCpu(server.process.pid if server.process else None,
                               self.watch_db if getattr(server, "spec", None) == APP_SPEC else None)
        if self.args.nice:
            system.prioritize_backends(self.watch_db, self.args.nice)
        watch.start()
        cpu.start()
        result = run()
        result.server_cpu_ms, result.db_cpu_ms = cpu.stop()
        result.noise_cores = watch.stop()
        return result

    def measure_bare(self, label: str) -> None:
        log(f"[bare] GET /bare on the bare Flask app ({label})")
        self.wrk_scenario(self.bare, self.bare_server, "/bare")

    def measure_bare_sync(self) -> None:
        """The bare endpoint under gunicorn's sync workers: the reference of the local API's first target."""
        if self.args.server_config.kind == "gunicorn-sync":
            return
        server = Server(BARE_SPEC, workers=self.args.workers, log_path=self.workdir / "server-bare-sync.log",
                        gunicorn_env=self.gunicorn_env(), name="bare-sync", nice=self.args.nice)
        self.servers.append(server)
        self.start(server)
        self.bare_sync = Scenario("bare-sync", "GET /bare (bare Flask JSON endpoint) under gunicorn sync workers")
        log(f"[bare-sync] {self.bare_sync.title}")
        self.wrk_scenario(self.bare_sync, server, "/bare")
        server.stop()

    def measure_overload(self, server: Server) -> None:
        """Scenario 8: 1 and 2 at OVERLOAD_FACTOR x the connections; load is to be queued, not failed."""
        connections = self.args.connections * OVERLOAD_FACTOR
        user_token = clients.password_grant(server.url, data.MAIN_USER)["access_token"]
        for key, title, path, kwargs in (
                ("1", "GET /localapi/account", "/localapi/account", {"headers": {"Authorization": f"Bearer {user_token}"}}),
                ("2", "POST /connect/token client_credentials", "/connect/token", {"script": "post", **CLIENT_CREDENTIALS})):
            s = Scenario(f"{key}x{OVERLOAD_FACTOR}", f"{title} at {connections} connections ({OVERLOAD_FACTOR} x)",
                         connections=connections)
            log(f"[{s.key}] {s.title}")
            self.wrk_scenario(s, server, path, connections=connections, **kwargs)
            self.scenarios[s.key] = s

    def measure_node_reference(self, alg: str) -> None:
        """Scenario 2's request against node-oidc-provider in one process (bench/node_reference.py)."""
        try:
            node = node_reference.ensure_installed(log)
        except node_reference.NodeUnavailable as err:
            log(f"[2n] node-oidc-provider not measured: {err}")
            self.results["node_reference"] = {"measured": False, "reason": str(err)}
            return
        provider = node_reference.NodeProvider(node, alg=alg, client_id=data.SERVICE_CLIENT,
                                               client_secret=data.SERVICE_SECRET, scope=data.LOCAL_API_SCOPE,
                                               log_path=self.workdir / "node-oidc-provider.log")
        self.servers.append(provider)
        provider.start()
        version = node_reference.installed_version()
        self.results["node_reference"] = {"measured": True, "oidc_provider": version,
                                          "node": node_reference.node_version(node), "alg": alg, "processes": 1}
        s = Scenario("2n", f"node-oidc-provider {version}, one process: POST /token client_credentials ({alg})")
        log(f"[{s.key}] {s.title}")
        self.wrk_scenario(s, provider, "/token", script="post", **CLIENT_CREDENTIALS)
        provider.stop()
        self.scenarios[s.key] = s

    def refresh_after(self, url: str):
        """After a refresh run: every token still queued must still work (nothing lost or used twice)."""

        def check(result) -> None:
            tokens = result.left
            good = 0
            for token in tokens:
                if clients.refresh(url, token).status_code == 200:
                    good += 1
            if good != len(tokens):
                result.errors += len(tokens) - good
                result.notes.append(f"{len(tokens) - good} of {len(tokens)} unused chain tokens were refused afterwards")
            else:
                result.notes.append(f"{good} unused chain tokens still valid afterwards")
            if result.counts.get("exhausted") or result.counts.get("missing_token"):
                result.notes.append(f"chain problems: {result.counts}")

        return check

    def run_wrk_scenarios(self, server: Server, db: data.Database, keys: list[str],
                          suffix: str = "") -> dict[str, Scenario]:
        out: dict[str, Scenario] = {}
        url = server.url
        form = "application/x-www-form-urlencoded"
        user_token = None
        if {"1", "5"} & set(keys):
            user_token = clients.password_grant(url, data.MAIN_USER)["access_token"]
        for key in keys:
            if key == "1":
                s = Scenario("1" + suffix, "GET /localapi/account (valid bearer token)")
                log(f"[{s.key}] {s.title}")
                self.wrk_scenario(s, server, "/localapi/account", headers={"Authorization": f"Bearer {user_token}"})
                out[s.key] = s
            elif key == "2":
                s = Scenario("2" + suffix, "POST /connect/token client_credentials (hashed secret)")
                log(f"[{s.key}] {s.title}")
                self.wrk_scenario(s, server, "/connect/token", script="post", **CLIENT_CREDENTIALS)
                out[s.key] = s
            elif key == "3":
                s = Scenario("3" + suffix, "POST /connect/token refresh_token, rotation (chained)")
                log(f"[{s.key}] {s.title}")
                n = self.args.connections
                self.wrk_scenario(s, server, "/connect/token", script="refresh",
                                  headers={"Authorization": data.basic_auth(data.APP_CLIENT, data.APP_SECRET),
                                           "Content-Type": form},
                                  args_fn=lambda: clients.refresh_tokens(url, n), after_fn=self.refresh_after(url))
                s.checks = chain_invariants(db)
                out[s.key] = s
            elif key == "4":
                for sub, path, title in (("4a", "/.well-known/openid-configuration", "GET discovery document"),
                                         ("4b", "/.well-known/openid-configuration/jwks", "GET JWKS")):
                    s = Scenario(sub + suffix, f"{title} ({path})")
                    log(f"[{s.key}] {s.title}")
                    self.wrk_scenario(s, server, path)
                    out[s.key] = s
            elif key == "5":
                s = Scenario("5" + suffix, "POST /connect/introspect (a user's access token)")
                log(f"[{s.key}] {s.title}")
                self.wrk_scenario(s, server, "/connect/introspect", script="post",
                                  headers={"Authorization": data.basic_auth(data.APP_CLIENT, data.APP_SECRET),
                                           "Content-Type": form},
                                  body=f"token={user_token}")
                out[s.key] = s
        return out

    # --- scenario 6 -----------------------------------------------------------------------
    def flows(self, server: Server, db: data.Database) -> dict[str, Scenario]:
        a = self.args
        params = self.kdf_params
        procs = a.flow_processes
        log(f"[6] pure Argon2id (m={params['memory_cost']} KiB, t={params['time_cost']}, "
            f"p={params['parallelism']}) in {procs} processes, one run just before each measured run of 6a and 6b")
        self.quiet()
        sizing_rate = kdf.rate("change", params, processes=procs, duration=a.duration)  # sizes 6b's users
        single = kdf.single_ms(params)
        log(f"    one verification {single:.1f} ms; {sizing_rate:.1f} verify+hash pairs/s (to prepare 6b's users)")
        self.results["kdf"] = {"params": params, "processes": procs, "single_verify_ms": round(single, 2)}
        out = {}
        # sign-in
        driver = (f"wrk, {a.signin_connections} connections" if a.signin_driver == "wrk"
                  else f"Python, {procs} processes x {a.flow_threads} threads")
        s = Scenario("6a", f"sign-in: authorize, login form, code, token (per sign-in; {driver})", unit="sign-ins/s",
                     reference={"what": "pure Argon2id verifications/s (one per sign-in)"})
        log(f"[6a] {s.title}")

        def sign_ins(duration: float) -> clients.FlowResult:
            if a.signin_driver == "wrk":
                return signin.run(self.wrk, server.url, connections=a.signin_connections, duration=duration)
            return clients.run_flow("signin", server.url, processes=procs, threads=a.flow_threads, duration=duration)

        warm = sign_ins(a.warmup)
        s.warmup_errors = warm.errors
        self.collect(s, self.paired_with_pure("verify", lambda: self.measured(server, lambda: sign_ins(a.duration))),
            lambda r: (f"{r.rate:7.1f} sign-ins/s  p50 {r.p50_ms:7.1f} ms  p99 {r.p99_ms:7.1f} ms  errors {r.errors}"
                       f"  server CPU {r.server_cpu_per_op_ms:.1f} ms, client CPU "
                       f"{r.client_cpu_seconds / max(1, r.completed) * 1000:.1f} ms per sign-in"
                       f"  others' load {r.noise_cores:.2f} cores  pure {r.reference_rate:.1f}/s just before"
                       + (f"  {r.error_samples[:1]}" if r.errors else "")))
        hold_to_pure(s)
        self.results["kdf"].update(verify_per_s=s.reference["rate"], verify_per_s_runs=s.reference["pure_runs"])
        out["6a"] = s
        # password change: each user changes once (a change revokes the token that made it)
        s = Scenario("6b", "POST /localapi/password (verify current + hash new)", unit="changes/s",
                     reference={"what": "pure Argon2id verify+hash pairs/s (two per change)"})
        total_seconds = a.warmup + (a.runs + a.noisy_retries) * a.duration
        needed = int(math.ceil(sizing_rate * 1.6 * total_seconds)) + 40
        log(f"[6b] {s.title}; preparing {needed} users with one access token each (bulk SQL + refresh grants)")
        bulk_hash = kdf.hash_for(data.BULK_PASSWORD, params)
        start = db.count("users")
        users = db.insert_users("pwchange", needed, bulk_hash, start=start)
        rows, refresh_tokens = data.refresh_rows_for(users, f"openid offline_access {data.LOCAL_API_SCOPE}")
        db.insert_refresh_tokens(rows)
        access = clients.access_tokens_from_refresh(server.url, refresh_tokens)
        items = [(token, data.BULK_PASSWORD) for token in access]
        per_run = int(math.ceil(sizing_rate * 1.6 * a.duration)) + 10
        warm_items, items = items[:int(sizing_rate * 1.6 * a.warmup) + 10], items[int(sizing_rate * 1.6 * a.warmup) + 10:]
        batches = 0

        def changes(batch: list, duration: float) -> clients.FlowResult:
            nonlocal batches
            if a.password_driver == "wrk":
                batches += 1
                items_file = pwchange.write_items(self.workdir, batch, str(batches))
                return pwchange.run(self.wrk, server.url, items_file, connections=a.password_connections,
                                    duration=duration)
            return clients.run_flow("password", server.url, processes=procs, threads=a.flow_threads,
                                    duration=duration, items=batch)

        warm = changes(warm_items, a.warmup)
        s.warmup_errors = warm.errors

        def one_change_run():
            nonlocal items
            batch, items = items[:per_run], items[per_run:]
            return self.measured(server, lambda: changes(batch, a.duration))

        self.collect(s, self.paired_with_pure("change", one_change_run), lambda r: (
            f"{r.rate:7.1f} changes/s   p50 {r.p50_ms:7.1f} ms  p99 {r.p99_ms:7.1f} ms  errors {r.errors}"
            f"  server CPU {r.server_cpu_per_op_ms:.1f} ms/change  others' load {r.noise_cores:.2f} cores"
            f"  pure {r.reference_rate:.1f}/s just before"
            + (f"  {r.error_samples[:1]}" if r.errors else "") + ("  (ran out of users)" if r.exhausted else "")))
        hold_to_pure(s)
        self.results["kdf"].update(verify_plus_hash_per_s=s.reference["rate"],
                                   verify_plus_hash_per_s_runs=s.reference["pure_runs"])
        out["6b"] = s
        return out

    def paired_with_pure(self, kind: str, run):
        """`run`, with a run of the pure hash rate (`kind`, kdf.rate) of the same length just before
        it (its `reference_rate`): the host's speed drifted by up to 17% within minutes (pure
        verification runs of 107.7, 116.9 and 117.1/s, then 99.6/s ten minutes later, same code), so
        a flow is held against the rate measured next to it, not one taken minutes earlier. The
        others' load during either counts as the pair's (`collect` sets a noisy pair aside)."""
        def one():
            watch = system.CpuWatch(self.watch_db)
            watch.start()
            pure = kdf.rate(kind, self.kdf_params, processes=self.args.flow_processes, duration=self.args.duration)
            pure_noise = watch.stop()
            result = run()
            result.reference_rate = pure
            result.noise_cores = max(result.noise_cores, pure_noise)
            return result
        return one

    # --- scenario 7 -------------------------------------------------------------------------
    def growth(self) -> dict:
        a = self.args
        log("[7] growth: a fresh database and server")
        db, server = self.prepare_app("growth")
        self.start(server)
        bulk_hash = kdf.hash_for(data.BULK_PASSWORD, self.kdf_params)
        out: dict = {"database": db.label, "stages": []}
        for stage, users_total, tokens_total in (("small", 1_000, 1_000),
                                                 ("large", a.growth_users, a.growth_refresh_tokens)):
            began = time.monotonic()
            users_now, tokens_now = db.count("users"), db.count("refresh_tokens")
            add_users = max(0, users_total - users_now)
            user_ids = [uid for uid, _ in db.insert_users("growth", add_users, bulk_hash, start=users_now)] if add_users else []
            if not user_ids:
                user_ids = db.user_ids()
            add_tokens = max(0, tokens_total - tokens_now)
            if add_tokens:
                db.insert_refresh_tokens(data.filler_refresh_rows(add_tokens, user_ids))
            db.analyze()
            load_seconds = time.monotonic() - began
            rows_before = {"users": db.count("users"), "refresh_tokens": db.count("refresh_tokens")}
            log(f"  [{stage}] {rows_before['users']:,} users, {rows_before['refresh_tokens']:,} refresh tokens "
                f"(written in {load_seconds:.1f}s)")
            measured = self.run_wrk_scenarios(server, db, ["1", "3"], suffix=f"@{stage}")
            rows_after = {"users": db.count("users"), "refresh_tokens": db.count("refresh_tokens")}
            out["stages"].append({"stage": stage, "rows_before": rows_before, "rows_after": rows_after,
                                  "load_seconds": round(load_seconds, 1),
                                  "scenarios": {k: v for k, v in measured.items()}})
        server.stop()
        return out

    # --- the whole run ------------------------------------------------------------------------
    def run(self) -> int:
        a = self.args
        log(f"bench: work directory {self.workdir}")
        self.wrk = Wrk(ensure_wrk(log), self.workdir, threads=a.threads, connections=a.connections)
        self.results["machine"] = system.machine_info()
        self.results["git"] = system.git_state(ROOT)
        self.results["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        compiled = system.compile_bytecode(ROOT)
        self.results["bytecode_compiled_seconds"] = round(compiled, 1)
        log(f"bench: the app and its packages compiled to bytecode, as an install does ({compiled:.1f} s)")

        db, server = self.prepare_app("main")
        settings = self.app_settings(server.app_env)
        self.kdf_params = {"time_cost": int(settings["ARGON2_TIME_COST"]),
                           "memory_cost": int(settings["ARGON2_MEMORY_COST_KIB"]),
                           "parallelism": int(settings["ARGON2_PARALLELISM"])}
        self.results["settings"] = {
            "workers": a.workers, "server": a.server_config.name,
            "server_description": a.server_config.describe(a.workers), "database": db.label, "database_version": db.version(),
            "duration_s": a.duration, "runs": a.runs, "warmup_s": a.warmup,
            "wrk_threads": a.threads, "wrk_connections": a.connections,
            "flow_processes": a.flow_processes, "flow_threads": a.flow_threads,
            "signin_driver": a.signin_driver, "signin_connections": a.signin_connections,
            "password_driver": a.password_driver, "password_connections": a.password_connections, "nice": a.nice,
            "gunicorn": {"config": "gunicorn.conf.py", **self.gunicorn_env()},
            "app": {k: v for k, v in settings.items()},
        }
        log(f"  app settings: {settings}")

        # start-up time: start to first 200 on /healthz, a few times
        samples = []
        for i in range(max(1, a.startup_samples)):
            samples.append(self.start(server))
            log(f"  {a.server_config.kind} start to first 200 on /healthz: {samples[-1] * 1000:.0f} ms")
            if i < a.startup_samples - 1:
                server.stop()
        self.results["startup_seconds"] = {"samples": [round(s, 3) for s in samples],
                                           "median": round(sorted(samples)[len(samples) // 2], 3)}

        self.bare_server = Server(BARE_SPEC, workers=a.workers, log_path=self.workdir / "server-bare.log",
                                  gunicorn_env=self.gunicorn_env(), name="bare", nice=a.nice, config=a.server_config)
        self.servers.append(self.bare_server)
        self.start(self.bare_server)

        self.measure_bare("first")
        self.bare_first_runs = len(self.bare.runs)
        if "1" in a.selected:
            self.measure_bare_sync()
        wrk_keys = [k for k in a.selected if k in ("1", "2", "3", "4", "5")]
        self.scenarios.update(self.run_wrk_scenarios(server, db, wrk_keys))
        if "2" in a.selected and not a.no_node_reference:
            self.measure_node_reference(settings["ACCESS_TOKEN_SIGNING_ALG"])
        if "1" in a.selected:
            check = clients.check_password_change_revokes(server.url)
            self.scenarios["1"].checks = check
            log(f"  check: a token from before a password change is refused: {check}")
        if "3" in a.selected:
            check = {**self.scenarios["3"].checks, **clients.check_refresh_exactly_once(server.url)}
            check["ok"] = check["ok"] and check["forked_families"] == 0 and check["revoked_under_load"] == 0
            self.scenarios["3"].checks = check
            log(f"  check: refresh tokens are used exactly once: {check}")
        if "8" in a.selected:
            self.measure_overload(server)
        if "6" in a.selected:
            self.scenarios.update(self.flows(server, db))
        self.measure_bare("last")

        rss = {}
        for pid in server.worker_pids():
            rss[pid] = system.rss_kib(pid)
        self.results["worker_memory_kib"] = {str(k): v for k, v in rss.items()}
        self.results["bare_worker_memory_kib"] = {str(p): system.rss_kib(p) for p in self.bare_server.worker_pids()}
        log(f"  app worker memory after the run (KiB): {rss}")
        self.results["rows_after_main_run"] = {"users": db.count("users"), "refresh_tokens": db.count("refresh_tokens")}
        server.stop()

        if a.growth:
            self.results["growth"] = self.growth()

        self.bare_server.stop()
        self.jsonable = report.finish(self)
        return 1 if report.any_failed(self) else 0

    def cleanup(self) -> None:
        for server in self.servers:
            try:
                server.stop()
            except Exception:
                pass
        if self.args.keep:
            log(f"bench: kept {self.workdir} and " + ", ".join(db.label for db in self.databases))
            return
        for db in self.databases:
            try:
                db.drop()
            except Exception as err:
                log(f"bench: could not drop {db.label}: {err}")
        shutil.rmtree(self.workdir, ignore_errors=True)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(argv)
    # SIGTERM (and SIGINT, which a shell's background job ignores) stop the run with the clean-up below
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    session_nice = None
    if args.nice:
        try:
            os.nice(args.nice)
            session_nice = system.raise_priority(os.getpid(), args.nice)
        except PermissionError:
            log(f"bench: cannot change priority by {args.nice} (a negative value needs root); going on without")
            args.nice = 0
    try:
        if len(args.server_configs) > 1:
            return compare_servers(args)
        return run_one(Bench(args))
    finally:
        if session_nice is not None:  # the session's autogroup, the caller's shell included, as it was
            system.set_autogroup_nice(os.getpid(), session_nice)


def run_one(bench: Bench) -> int:
    try:
        return bench.run()
    except data.DatabaseUnavailable as err:
        log(f"bench: {err}")
        return 2
    except (ServerError, WrkError, clients.FlowError) as err:
        log(f"bench: {err}")
        for server in bench.servers:
            log(f"--- {server.name} log ---\n{server.log()}")
        return 2
    except KeyboardInterrupt:
        log("bench: interrupted")
        return 130
    finally:
        bench.cleanup()


def compare_servers(args: argparse.Namespace) -> int:
    """--servers: the whole run under each server in turn (a fresh database each), then a side-by-side table;
    --json gets {"servers": [each run's results]}."""
    json_path, png_path = args.json, args.png
    args.json = args.png = None
    results, worst = [], 0
    for config in args.server_configs:
        args.server_config = config
        log(f"===== server {config.name} =====")
        bench = Bench(args)
        code = run_one(bench)
        worst = max(worst, code)
        if code == 130:
            return code
        if code == 2:  # this server failed (its log was printed): say so in the table, go on with the next
            log(f"===== server {config.name}: the run stopped (see above) =====")
            continue
        results.append(bench.jsonable)
    print()
    print(report.comparison(results), flush=True)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps({"servers": results}, indent=2, default=str))
        log(f"wrote {json_path}")
    return worst
