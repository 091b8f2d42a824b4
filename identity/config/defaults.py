"""Every setting with its default. Override in instance/config.py, FLASK_* env, or create_app(config)."""

# --- deployment ---------------------------------------------------------
ENVIRONMENT = "production"  # "development" relaxes cookie Secure flag and generates SECRET_KEY
SECRET_KEY = None  # required in production; generated into instance/ in development
ISSUER = None  # e.g. "https://id.example.com"; None: the request's scheme and host
TRUST_PROXY_HOPS = 0  # >0: apply ProxyFix and trust that many X-Forwarded-* hops
SQLALCHEMY_DATABASE_URI = None  # None: sqlite file instance/identity.db
SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
# A serving process's PostgreSQL statements (lock waits included) are cancelled after this many
# seconds and the request gets 503 (statement_timeout; 0: none). SQLite waits for a lock at most
# connect_args.timeout (30 s). granian has no per-request timeout of its own.
DATABASE_STATEMENT_TIMEOUT_SECONDS = 30
MAX_CONTENT_LENGTH = 64 * 1024  # bytes; larger bodies get 413
PRODUCT_NAME = "Portcullis Identity"
LOG_REQUESTS = True  # one JSON line per request (request id, method, path without query, status, ms, ip)
LOG_REQUESTS_FLUSH_SECONDS = 1.0  # request lines are written in batches, none later than this; 0: each at once
# Who may read GET /metrics (Prometheus text format; docs/metrics.md): addresses and CIDR blocks,
# a list or a comma-separated string; the client address as TRUST_PROXY_HOPS gives it. Others get 404.
METRICS_ALLOWED_IPS = ["127.0.0.1", "::1"]

# --- cookies and sessions ----------------------------------------------
SESSION_COOKIE_NAME = "idsrv.session"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = None  # None: True outside development
REMEMBER_COOKIE_NAME = "idsrv.remember"
REMEMBER_COOKIE_DURATION_SECONDS = 14 * 24 * 3600  # "remember me" keeps a sign-in this long (at most the absolute lifetime)
# Server-side session lifetimes (services/browser_sessions.py), "remember me" included: a session unused
# for SESSION_IDLE_SECONDS, or SESSION_ABSOLUTE_SECONDS after sign-in, is ended and its user
# signs in again. NIST SP 800-63B-4 asks at most 30 days between sign-ins for a password alone.
SESSION_IDLE_SECONDS = 24 * 3600
SESSION_ABSOLUTE_SECONDS = 14 * 24 * 3600
REMEMBER_COOKIE_HTTPONLY = True
REMEMBER_COOKIE_SAMESITE = "Lax"
WTF_CSRF_TIME_LIMIT = 3600  # seconds a form's CSRF token stays valid

# --- passwords (NIST SP 800-63B-4) ----------------------------------------
PASSWORD_MIN_LENGTH = 15
PASSWORD_MAX_LENGTH = 128  # at least 64 must be allowed; at most 1024 (constants.PASSWORD_INPUT_MAX)
# zxcvbn's estimate of the guesses a password takes, as a power of ten: fewer is refused.
# 11 refuses the weak long passwords of tests/data/ and accepts every strong passphrase there (docs/passwords.md).
PASSWORD_MIN_GUESSES_LOG10 = 11
PASSWORD_MIN_DISTINCT_CHARACTERS = 5  # "1990-01-01-1990-01" (4) is refused; no strong one in tests/data/ has fewer than 10
ARGON2_TIME_COST = 2  # OWASP minimum for argon2id with 19 MiB
ARGON2_MEMORY_COST_KIB = 19456
ARGON2_PARALLELISM = 1

# --- multi-factor authentication (docs/mfa.md) ------------------------------
MFA_PENDING_SECONDS = 300  # a right password waits this long for its second step, then the sign-in starts over
MFA_RECENT_SECONDS = 300  # a token whose amr has "mfa" and whose auth_time is this recent changes a password without `otp`

# --- passkeys (WebAuthn; services/passkeys.py) -------------------------------
PASSKEY_SIGNIN_ENABLED = True  # "Sign in with a passkey" on the login page (passwordless, user verification required)

# --- lockout and rate limits -------------------------------------------
LOCKOUT_MAX_FAILURES = 10  # consecutive failures that lock an account
LOCKOUT_SECONDS = 300  # how long the lock lasts
RATELIMIT_ENABLED = True
RATELIMIT_STORAGE_URI = "memory://"  # "redis://host:6379" for several instances
# while that store is unreachable, each worker counts in its own memory (and tries the store again
# now and then) rather than answering every request 500 (/healthz included)
RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
# a Redis that accepts and never answers costs a request this long (connecting, then each read),
# not redis-py's defaults (no timeout); then the fallback above counts
RATELIMIT_STORAGE_TIMEOUT_SECONDS = 0.5
RATELIMIT_SENSITIVE = "100 per minute"  # sign-in, password change and failed client authentications, per client IP
RATELIMIT_DEFAULT = "1000 per minute"  # every other endpoint, per client IP
RATELIMIT_PER_TOKEN = "30 per minute"  # POST /localapi/password per access token
RATELIMIT_PASSWORD_CHECK = "1000 per minute"  # the change-password page's strength meter, per client IP (carrier NAT)
RATELIMIT_HEADERS_ENABLED = False  # True adds X-RateLimit-* (and Retry-After) to every response

# --- tokens ------------------------------------------------------------
ACCESS_TOKEN_SIGNING_ALG = "ES256"  # RS256 or ES256; measured faster end to end (docs/performance.md)
ID_TOKEN_SIGNING_ALG = "RS256"  # the only value: clients expect RS256 ID tokens (OpenID Connect Core 3.1.3.7)
AUTHORIZATION_CODE_LIFETIME_SECONDS = 300  # a code is redeemed within this, or never
ID_TOKEN_LIFETIME_SECONDS = 300  # exp - iat of an ID token
# A refresh token expires this long after it was issued; each rotation issues a new one, so the
# lifetime slides, up to the absolute lifetime below. A shorter setting applies to tokens issued before it.
REFRESH_TOKEN_LIFETIME_SECONDS = 30 * 24 * 3600
# A refresh token family ends this long after the sign-in it began with, however often it is used
# (IdentityServer's AbsoluteRefreshTokenLifetime): then the app signs the user in again.
REFRESH_TOKEN_ABSOLUTE_LIFETIME_SECONDS = 90 * 24 * 3600
JWT_LEEWAY_SECONDS = 30  # clock skew allowed on exp/nbf/iat
JWT_MAX_LENGTH = 8192  # bytes; longer tokens are refused before parsing
SIGNING_KEY_RELOAD_SECONDS = 5  # how often a worker re-reads the key table (and so renews its JWKS)
CORS_ORIGINS_CACHE_SECONDS = 5  # how long a worker reuses the clients' CORS origins before re-reading them
DISCOVERY_DOCUMENT_CACHE_SECONDS = 5  # how long a worker reuses the discovery document it built (it names the scopes)
# PostgreSQL: whether a refresh-token rotation waits for its WAL record to reach disk before
# the response (True: as the database's own synchronous_commit says, like every other write).
# Off (the default), a database crash can lose the newest rotations (at most
# ~3 x wal_writer_delay, 0.6 s by default): those clients get invalid_grant and sign in again;
# exactly-once use is unaffected (each rotation is still one atomic conditional statement).
# SQLite in WAL mode with synchronous=NORMAL (this server's setting) behaves the same way.
ROTATION_SYNCHRONOUS_COMMIT = False
# How long a worker may reuse the answer of a bearer check for a token it has seen before
# (0: ask the database on every request). A password change or removal of a user whose tokens
# were in such use waits this long before it answers (services/bearer_cache.py), holding its
# worker; a revocation waits for nothing, and another worker may accept a revoked token this long
# after the revocation answered. Every instance must have the same value. At most 5.
BEARER_CACHE_SECONDS = 0.5
CLIENT_CACHE_SECONDS = 5  # how long a worker reuses a client's settings before re-reading them
# Staged signing-key rotation (services/keys.py; Duende's automatic key management defaults).
# A new key is published PROPAGATION before it signs (must exceed DISCOVERY_CACHE_SECONDS +
# SIGNING_KEY_RELOAD_SECONDS, so relying parties have it before they meet a token it signed);
# a key that stopped signing stays published RETENTION (must exceed the longest token lifetime).
SIGNING_KEY_ROTATION_SECONDS = 90 * 24 * 3600  # a key signs this long, then its successor takes over
SIGNING_KEY_PROPAGATION_SECONDS = 14 * 24 * 3600
SIGNING_KEY_RETENTION_SECONDS = 14 * 24 * 3600
# Fernet key(s) that encrypt the private signing keys in the database; a list for KEK rotation
# (decrypt with any, encrypt with the first). Required in production; generated into
# instance/key_encryption_key in development.
KEY_ENCRYPTION_KEY = None
DISCOVERY_CACHE_SECONDS = 300  # Cache-Control max-age of discovery and JWKS (for callers; the worker's own caches are above)

# --- purge and retention (services/purge.py) -------------------------------
PURGE_INTERVAL_SECONDS = 300  # each worker purges after a response at most this often; 0: only `flask purge`
PURGE_BATCH_SIZE = 500  # rows of each kind one automatic pass removes at most
CODE_TOMBSTONE_SECONDS = 24 * 3600  # a code is kept this long after expiry, so a replay still revokes its tokens
AUDIT_RETENTION_DAYS = 365  # audit events older than this are removed

# --- back-channel logout (services/logout.py, services/logout_delivery.py) ---
BACKCHANNEL_LOGOUT_TIMEOUT_SECONDS = 5  # one delivery attempt waits at most this long for the client's answer
BACKCHANNEL_LOGOUT_RETRY_SECONDS = 3600  # a delivery is retried with backoff for this long after it was queued, then given up
BACKCHANNEL_LOGOUT_BACKOFF_SECONDS = 5  # wait before the first retry; doubled after each failure (at most 600 per wait)
BACKCHANNEL_LOGOUT_MAX_RESPONSE_BYTES = 4096  # bytes of a client's answer read at most
# each worker looks for due deliveries (queued by other workers or instances, or retries) at most
# this often, after a response; 0: workers send nothing, `flask logout-deliveries run` does
BACKCHANNEL_LOGOUT_POLL_SECONDS = 15
LOGOUT_TOKEN_LIFETIME_SECONDS = 120  # exp - iat of a logout token (it is signed at each attempt)
LOGOUT_DELIVERY_RETENTION_SECONDS = 7 * 24 * 3600  # delivered and given-up deliveries are kept this long, then purged

# --- mail (services/mail.py, through Flask-Mail, whose names these are) ---------------------
# Without MAIL_SERVER (development only: production requires it) mails are written to
# instance/outbox/, one .eml file each. Plain SMTP on MAIL_SERVER:MAIL_PORT unless TLS or SSL is on;
# a login only when MAIL_USERNAME and MAIL_PASSWORD are both set.
MAIL_SERVER = None
MAIL_PORT = 25
MAIL_USE_TLS = False  # STARTTLS after connecting (usually port 587)
MAIL_USE_SSL = False  # TLS from the start (usually port 465)
MAIL_USERNAME = None
MAIL_PASSWORD = None
MAIL_DEFAULT_SENDER = None  # e.g. "Example ID <no-reply@example.com>"; None: PRODUCT_NAME <no-reply@issuer's host>
MAIL_TIMEOUT_SECONDS = 10  # SMTP connect and each reply; a mail that takes longer fails (logged, audited)
MAIL_SUPPRESS_SEND = False  # Flask-Mail would drop every mail under TESTING; the tests read theirs from a real SMTP server

# --- account recovery (services/recovery.py) ----------------------------
PASSWORD_RESET_SECONDS = 1800  # how long a reset link works (it works once)
PASSWORD_RESET_MAILS_PER_HOUR = 3  # reset mails one account gets at most in an hour (counted in the database)
RATELIMIT_PASSWORD_RESET = "1000 per minute"  # forgot-password requests per client IP (carrier NAT: the account limit protects each one)
RATELIMIT_PASSWORD_RESET_ACCOUNT = "5 per hour"  # forgot-password requests naming one account (any IP)

# --- features (discovery advertises exactly these) -----------------------
GRANT_TYPES_ENABLED = ["authorization_code", "hybrid", "implicit", "client_credentials", "password", "refresh_token"]

# --- verified addresses and self-registration (services/verification.py, services/registration.py) ---
REGISTRATION_ENABLED = False  # True: /account/register creates users (and the sign-in page links to it); False: 404
EMAIL_VERIFICATION_SECONDS = 24 * 3600  # how long a verification link works (it works once)
EMAIL_VERIFICATION_MAILS_PER_HOUR = 3  # verification links one account is sent at most in an hour (counted in the database); apart, notices to an unverified address
RATELIMIT_REGISTRATION = "10 per hour"  # registrations per client IP
RATELIMIT_REGISTRATION_ADDRESS = "3 per hour"  # registrations that mail one address (any IP): new or taken alike
RATELIMIT_EMAIL = "10 per hour"  # verification and address-change requests per signed-in user (pages), per token (local API)
