"""The rate limiter: Flask-Limiter counting in the shared store (RATELIMIT_STORAGE_URI), and what
a worker does when that store is unreachable, full, slow or evicting (docs/passwords.md)."""

import logging
import sys
import time
from urllib.parse import urlsplit

from flask import current_app
from flask_limiter import Limiter
from limits.storage import MemoryStorage
from werkzeug.exceptions import ServiceUnavailable


class AppLimiter(Limiter):
    def init_app(self, app) -> None:
        """Flask-Limiter's, starting on the app's own store: the limiter is one per process, and
        a store an earlier app found unreachable (RATELIMIT_IN_MEMORY_FALLBACK_ENABLED) is not this one,
        nor are an earlier app's fallback and headers settings this one's (Flask-Limiter reads the
        first app's headers setting only, and only ever turns the fallback on)."""
        self.__dict__["_store_unreachable"] = False  # not through _storage_dead: no app has found it back
        self._in_memory_fallback_enabled = False
        self._headers_enabled = None
        self._storage_options = {}  # Flask-Limiter adds each app's RATELIMIT_STORAGE_OPTIONS to the last one's
        self._eviction_checked = False
        if not any(isinstance(f, _WithoutItsCause) for f in self.logger.filters):
            self.logger.addFilter(_WithoutItsCause())
        try:
            super().init_app(app)
        except Exception as err:
            # redis-py's cluster client connects as it is built, here (the other stores at their first count)
            try:
                from redis.exceptions import RedisClusterException
            except ImportError:  # no redis-py: not a cluster store
                raise err from None
            if not isinstance(err, RedisClusterException):
                raise
            raise StoreUnreachableAtStart(_without_password(str(err), app.config)) from err

    @property
    def store_errors(self) -> tuple:
        """The errors of the store's being unreachable: its own (redis-py's RedisError), and
        redis-py's cluster's RedisClusterException, which is not one (no node answers)."""
        errors = self.storage.base_exceptions
        errors = errors if isinstance(errors, tuple) else (errors,)
        try:
            from redis.exceptions import RedisClusterException
        except ImportError:  # no redis-py: a store of another kind
            return errors
        return (*errors, RedisClusterException)

    @property
    def _storage_dead(self) -> bool:
        return self.__dict__.get("_store_unreachable", False)

    @_storage_dead.setter
    def _storage_dead(self, dead: bool) -> None:
        """Flask-Limiter's flag, and the store found unreachable starts the schedule of its checks
        (1 s, 2 s, 4 s, ...) from then: Flask-Limiter counted the same request again in memory at
        once and, its last check a second old or more, asked the store first whether it was back:
        a store that does not answer cost that request RATELIMIT_STORAGE_TIMEOUT_SECONDS twice."""
        if dead and not self.__dict__.get("_store_unreachable", False):
            self._Limiter__last_check_backend = time.time()
            # Flask-Limiter's warning names no cause (a wrong password, a database number Redis
            # does not have, a full Redis read as "unreachable" as a Redis down): this one does,
            # set in the handler of the store's error (without the URI's password)
            cause = sys.exc_info()[1]
            if cause is not None:
                self.logger.warning("%s: %s", FALLBACK_WARNING, _without_password(f"{type(cause).__name__}: {cause}"))
        elif not dead and self.__dict__.get("_store_unreachable", False):
            # Flask-Limiter says so at INFO, which no server's log writes: the log said only
            # "unreachable", long after the limits were shared again
            self.logger.warning("Rate limit storage reachable again - counting in it again")
        self.__dict__["_store_unreachable"] = dead

    def _Limiter__should_check_backend(self) -> bool:
        """Flask-Limiter's schedule of the unreachable store's checks, and the check a count (a
        write), not its PING alone: a full Redis (maxmemory, noeviction) answers PING and refuses
        every count, so each worker took it back every second and lost it at the next request,
        a pair of warnings a second, with no backoff."""
        if not super()._Limiter__should_check_backend():
            return False
        try:
            self.storage.incr("identity-storage-check", 60)
        except self.store_errors:
            return False
        return True

    def _check_request_limit(self, callable_name=None, in_middleware=True):
        """Nothing to check while RATELIMIT_ENABLED is false (limits kept at the proxy, the benchmark):
        Flask-Limiter's route decorators would still sort and evaluate every limit of the route."""
        if not self.enabled:
            return
        try:
            super()._check_request_limit(callable_name=callable_name, in_middleware=in_middleware)
            if not self._eviction_checked and not self._storage_dead and self.current_limits:
                self._warn_if_the_store_evicts()  # after a count: never on /healthz, which counts nothing
        except Exception as err:
            # RATELIMIT_IN_MEMORY_FALLBACK_ENABLED false and the store unreachable: a request that
            # must be counted cannot be served now, which is a 503 (the local API documents it), not a 500
            store = self.storage
            if (self._in_memory_fallback_enabled or isinstance(store, MemoryStorage)  # never unreachable
                    or not isinstance(err, self.store_errors)):
                raise
            # one line per refused request, as a database outage logs, or the log shows 503s and not why
            current_app.logger.error("rate limit storage unavailable: %s; answered 503 (RATELIMIT_IN_MEMORY_FALLBACK_ENABLED "
                                     "is false)", type(err).__name__)
            raise ServiceUnavailable("The rate limits cannot be counted now; try again shortly.",
                                     retry_after=5) from err

    def _warn_if_the_store_evicts(self) -> None:
        """Once a worker, at its first count: a Redis with maxmemory and a policy that evicts (a
        cache's settings; every count has a time to live, so volatile-* policies too) drops counts
        when it is full, and the limits with them, which nothing else would say."""
        self._eviction_checked = True
        connection = getattr(self.storage, "get_connection", None)
        try:
            memory = connection().info("memory") if connection else None
        except (AttributeError, *self.store_errors):
            return  # not a Redis, or INFO refused (a managed Redis may rename it): nothing to tell
        if not isinstance(memory, dict) or "maxmemory_policy" not in memory:
            return  # a cluster answers per node, another store has no such thing
        if int(memory.get("maxmemory") or 0) > 0 and memory["maxmemory_policy"] != "noeviction":
            self.logger.warning("Rate limit storage evicts keys when full (maxmemory-policy %s): counts are dropped "
                                "then, and the limits with them; set maxmemory-policy noeviction (docs/passwords.md)",
                                memory["maxmemory_policy"])

    @property
    def current_limit(self):
        """Flask-Limiter's, which its after-request step reads the X-RateLimit-* headers of
        (RATELIMIT_HEADERS_ENABLED) from the store. Without the fallback, Redis gone since the
        request was counted (a restart) raised there: a 500 for a page that had been served. Read
        here first: then the answer goes out without the headers, and the line says why."""
        limit = super().current_limit
        if (limit is None or not self._headers_enabled or self._in_memory_fallback_enabled
                or isinstance(self.storage, MemoryStorage)):
            return limit  # the fallback's own handling of a failed read is Flask-Limiter's
        try:
            limit.window  # noqa: B018  (read once, kept on the limit)
        except self.store_errors as err:
            current_app.logger.error("rate limit storage unavailable: %s; answered without the X-RateLimit-* headers "
                                     "(RATELIMIT_IN_MEMORY_FALLBACK_ENABLED is false)", type(err).__name__)
            return None
        return limit

    def _Limiter__check_conditional_deductions(self, response) -> None:
        """Flask-Limiter's counting after the answer (`deduct_when`: a refused link, a failed client
        authentication, a registration that mailed). The store failing there (Redis stopped
        meanwhile, or full: it still reads, so the check before the view passed) raised out of the
        after-request step: a 500 for a view that had answered, and nothing counted. The count now
        goes to the in-memory fallback as any other; without the fallback the answer stands (the
        view has run: a 503 would say it had not) and the lost count is logged."""
        try:
            super()._Limiter__check_conditional_deductions(response)
        except Exception as err:
            store = self.storage
            if isinstance(store, MemoryStorage) or not isinstance(err, self.store_errors):
                raise
            if self._in_memory_fallback_enabled and not self._storage_dead:
                self.logger.warning(FALLBACK_WARNING)
                self._storage_dead = True
                super()._Limiter__check_conditional_deductions(response)
                return
            current_app.logger.error("rate limit storage unavailable: %s; a request was answered but not counted "
                                     "(RATELIMIT_IN_MEMORY_FALLBACK_ENABLED is false)", type(err).__name__)


#: Flask-Limiter's warning when it counts in memory, which AppLimiter logs again with its cause
FALLBACK_WARNING = "Rate limit storage unreachable - falling back to in-memory storage"


class _WithoutItsCause(logging.Filter):
    """Drops Flask-Limiter's own fallback warning, which AppLimiter's _storage_dead logs with its cause."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != FALLBACK_WARNING or bool(record.args)


class StoreUnreachableAtStart(RuntimeError):
    """A Redis Cluster store no node of which answered as the app started: redis-py's cluster
    client cannot be built without one."""


def _without_password(text: str, config=None) -> str:
    """An error's words without the store URI's password, should they ever hold it."""
    config = config if config is not None else (current_app.config if current_app else {})
    password = urlsplit(str(config.get("RATELIMIT_STORAGE_URI") or "")).password
    return text.replace(password, "***") if password else text
