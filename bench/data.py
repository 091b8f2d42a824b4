"""The benchmark's own data: a seed file for the operator's CLI, and bulk rows written with plain SQL.

Clients and the few users that sign in go through `flask --app app seed` (secrets and passwords
hashed by the app). The many rows (users whose passwords change once, and the growth
scenario's 100,000 users and 1,000,000 refresh tokens) are written straight into the tables
with executemany (SQLite) or COPY (PostgreSQL): the ORM would take minutes for them.

Each run gets a database of its own: a file in a temporary directory (SQLite), or a schema of
its own inside the database named by --database (PostgreSQL, through `search_path`), dropped at
the end, so the benchmark never touches the tables already there.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

# --- who the benchmark is ------------------------------------------------------------

SERVICE_CLIENT = "bench-service"
SERVICE_SECRET = "bench-service-secret-not-for-production"
APP_CLIENT = "bench-app"
APP_SECRET = "bench-app-secret-not-for-production"
SIGNIN_CLIENT = "bench-signin"
SIGNIN_REDIRECT = "http://127.0.0.1:9/callback"
LOCAL_API_SCOPE = "IdentityServerApi"
USER_PASSWORD = "amber-lantern-meadow-4821"  # 25 characters, not a common password
SIGNIN_USERS = 8
MAIN_USER = "bench-user-0"
CHECK_USER = "bench-check"  # its password changes once, to show old tokens are refused
BULK_PASSWORD = "copper-violet-harbor-7316"  # users written with SQL; the same Argon2id hash for all


def basic_auth(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def seed_document() -> dict:
    users = [{"username": f"bench-user-{i}", "email": f"bench-user-{i}@example.test", "password": USER_PASSWORD,
              "name": f"Bench User {i}"} for i in range(SIGNIN_USERS)]
    users.append({"username": CHECK_USER, "email": "bench-check@example.test", "password": USER_PASSWORD,
                  "name": "Bench Check"})
    return {
        "api_scopes": [{"name": LOCAL_API_SCOPE, "display_name": "Local API"}],
        "clients": [
            {
                "client_id": SERVICE_CLIENT, "client_name": "Benchmark service",
                "client_secrets": [SERVICE_SECRET], "allowed_grant_types": ["client_credentials"],
                "allowed_scopes": [LOCAL_API_SCOPE], "access_token_lifetime": 3600,
            },
            {
                "client_id": APP_CLIENT, "client_name": "Benchmark app (password grant, refresh tokens)",
                "client_secrets": [APP_SECRET], "allowed_grant_types": ["password"],
                "allowed_scopes": ["openid", "profile", "email", LOCAL_API_SCOPE],
                "allow_offline_access": True, "access_token_lifetime": 3600,
            },
            {
                "client_id": SIGNIN_CLIENT, "client_name": "Benchmark sign-in (public, PKCE)",
                "allowed_grant_types": ["authorization_code"], "redirect_uris": [SIGNIN_REDIRECT],
                "require_pkce": True, "require_consent": False,
                "allowed_scopes": ["openid", "profile", LOCAL_API_SCOPE], "access_token_lifetime": 3600,
            },
        ],
        "users": users,
    }


def write_seed(directory: Path) -> Path:
    path = directory / "bench-seed.json"
    path.write_text(json.dumps(seed_document(), indent=2))
    return path


# --- databases -------------------------------------------------------------------------

USER_COLUMNS = ("subject", "username", "username_normalized", "email", "email_normalized", "name", "password_hash",
                "password_version", "password_changed_at", "failed_attempts", "locked_until", "created_at")
REFRESH_COLUMNS = ("token_hash", "family_id", "client_id", "user_id", "session_id", "scope", "auth_time",
                   "access_token_jti", "issued_at", "expires_at", "consumed_at", "revoked_at")


class DatabaseUnavailable(Exception):
    """The --database given cannot be reached or written: the run stops before it starts."""


@dataclass
class Database:
    kind: str  # "sqlite" or "postgresql"
    uri: str  # FLASK_SQLALCHEMY_DATABASE_URI for the app
    label: str  # shown in the report
    path: Path | None = None  # SQLite file
    conninfo: str | None = None  # libpq URI, with our search_path
    base_conninfo: str | None = None
    schema: str | None = None
    database_name: str | None = None

    # -- life cycle --
    @classmethod
    def create(cls, spec: str, directory: Path, name: str) -> "Database":
        if spec in ("sqlite", ""):
            path = directory / f"{name}.db"
            return cls("sqlite", f"sqlite:///{path}", "SQLite (file, WAL)", path=path)
        if spec.startswith("postgresql"):
            from sqlalchemy.engine import make_url

            url = make_url(spec)
            if not url.drivername.startswith("postgresql"):
                raise ValueError(f"unsupported database {spec!r}")
            schema = f"bench_{name}_{int(time.time())}_{secrets.token_hex(2)}"
            query = dict(url.query)
            options = f"-csearch_path={schema}"
            if query.get("options"):
                options = f"{query['options']} {options}"
            query["options"] = options
            app_url = url.set(drivername="postgresql+psycopg", query=query)
            libpq = url.set(drivername="postgresql", query=query)
            base = url.set(drivername="postgresql")
            where = f"PostgreSQL {url.host}:{url.port or 5432}/{url.database}"  # never the password
            db = cls("postgresql", app_url.render_as_string(hide_password=False), f"{where} (schema {schema})",
                     conninfo=libpq.render_as_string(hide_password=False),
                     base_conninfo=base.render_as_string(hide_password=False), schema=schema,
                     database_name=url.database)
            import psycopg

            try:
                db._create_schema()
            except psycopg.Error as err:  # libpq's message names host and port, never the password
                raise DatabaseUnavailable(f"cannot reach {where}: {str(err).strip()}") from None
            return db
        raise ValueError(f"--database takes 'sqlite' or a postgresql+psycopg:// URI, not {spec!r}")

    def _create_schema(self) -> None:
        import psycopg

        with psycopg.connect(self.base_conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{self.schema}"')
            self.server_version = conn.execute("SHOW server_version").fetchone()[0]

    def drop(self) -> None:
        if self.kind == "postgresql":
            import psycopg

            with psycopg.connect(self.base_conninfo, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        elif self.path is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)

    def connect(self):
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.path, timeout=60)
            conn.execute("PRAGMA synchronous=NORMAL")
            return conn
        import psycopg

        return psycopg.connect(self.conninfo)

    def version(self) -> str:
        if self.kind == "sqlite":
            return f"SQLite {sqlite3.sqlite_version}"
        return f"PostgreSQL {getattr(self, 'server_version', '?')}"

    # -- queries --
    def count(self, table: str) -> int:
        with self._cursor() as (conn, cur):
            cur.execute(f"SELECT count(*) FROM {table}")
            return cur.fetchone()[0]

    def scalar(self, sql: str, params=()):
        with self._cursor() as (conn, cur):
            cur.execute(self._sql(sql), params)
            row = cur.fetchone()
            return row[0] if row else None

    def user_ids(self) -> list[int]:
        with self._cursor() as (conn, cur):
            cur.execute("SELECT id FROM users ORDER BY id")
            return [row[0] for row in cur.fetchall()]

    def analyze(self) -> None:
        """Refresh planner statistics after a bulk load (what autovacuum does within a minute)."""
        if self.kind == "postgresql":
            import psycopg

            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                conn.execute("ANALYZE users")
                conn.execute("ANALYZE refresh_tokens")

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.kind == "postgresql" else sql

    class _Cursor:
        def __init__(self, db):
            self.db = db

        def __enter__(self):
            self.conn = self.db.connect()
            self.cur = self.conn.cursor()
            return self.conn, self.cur

        def __exit__(self, exc_type, *rest):
            if exc_type is None:
                self.conn.commit()
            self.conn.close()

    def _cursor(self):
        return Database._Cursor(self)

    # -- bulk writes --
    def insert_users(self, prefix: str, count: int, password_hash: str, *, start: int = 0) -> list[tuple[int, str]]:
        """Write `count` users named PREFIX-N (N from `start`); return their (id, username), in order."""
        stamp = int(time.time())
        rows = ((secrets.token_hex(16), f"{prefix}-{i}", f"{prefix}-{i}", None, None, f"Bulk {i}", password_hash,
                 1, stamp, 0, 0, stamp) for i in range(start, start + count))
        self._bulk("users", USER_COLUMNS, rows)
        with self._cursor() as (conn, cur):
            cur.execute(self._sql("SELECT id, username FROM users WHERE username_normalized >= ? AND username_normalized < ?"),
                        (f"{prefix}-", f"{prefix}.",))
            found = {name: uid for uid, name in cur.fetchall()}
        return [(found[f"{prefix}-{i}"], f"{prefix}-{i}") for i in range(start, start + count) if f"{prefix}-{i}" in found]

    def insert_refresh_tokens(self, rows) -> None:
        """rows: iterables of REFRESH_COLUMNS values."""
        self._bulk("refresh_tokens", REFRESH_COLUMNS, rows)

    def _bulk(self, table: str, columns: tuple[str, ...], rows, chunk: int = 50_000) -> None:
        names = ", ".join(columns)
        if self.kind == "sqlite":
            conn = self.connect()
            try:
                placeholders = ", ".join("?" for _ in columns)
                batch = []
                for row in rows:
                    batch.append(row)
                    if len(batch) >= chunk:
                        conn.executemany(f"INSERT INTO {table} ({names}) VALUES ({placeholders})", batch)
                        conn.commit()
                        batch = []
                if batch:
                    conn.executemany(f"INSERT INTO {table} ({names}) VALUES ({placeholders})", batch)
                    conn.commit()
            finally:
                conn.close()
            return
        with self.connect() as conn:
            with conn.cursor() as cur:
                with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            conn.commit()


def token_hash(value: str) -> str:
    """As the app stores refresh tokens and codes: SHA-256 hex of the handle."""
    return hashlib.sha256(value.encode()).hexdigest()


def refresh_rows_for(users: list[tuple[int, str]], scope: str) -> tuple[list[tuple], list[str]]:
    """One live refresh token per user (for the password-change scenario); returns (rows, tokens)."""
    stamp = int(time.time())
    tokens, rows = [], []
    for user_id, _ in users:
        token = secrets.token_urlsafe(32)
        tokens.append(token)
        rows.append((token_hash(token), secrets.token_urlsafe(16), APP_CLIENT, user_id, None, scope, stamp, None,
                     stamp, stamp + 30 * 24 * 3600, None, None))
    return rows, tokens


def filler_refresh_rows(count: int, user_ids: list[int], family_size: int = 10):
    """Stored refresh tokens as a busy server accumulates them: families of rotated tokens, the last one live."""
    stamp = int(time.time())
    expires = stamp + 30 * 24 * 3600
    scope = f"openid profile offline_access {LOCAL_API_SCOPE}"
    family = None
    n_users = len(user_ids)
    for i in range(count):
        position = i % family_size
        if position == 0:
            family = secrets.token_urlsafe(16)
            user_id = user_ids[(i // family_size) % n_users]
        last = position == family_size - 1 or i == count - 1
        yield (hashlib.sha256(secrets.token_bytes(32)).hexdigest(), family, APP_CLIENT, user_id, None, scope,
               stamp - 3600, secrets.token_urlsafe(16), stamp - 3600 + position, expires,
               None if last else stamp - 3600 + position + 1, None)
