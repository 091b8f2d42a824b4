"""The Flask class the factory builds: Flask, minus a check it repeats on every request."""

import weakref

from flask import Flask


class IdentityFlask(Flask):
    """Flask, remembering which views and hooks are plain functions.

    Flask asks `inspect.iscoroutinefunction` about the view and every before-request,
    after-request and teardown hook on each request (about 2 µs a question, several per
    request). The answer for a function never changes, so it is kept in a weak set: functions
    made per request (`after_this_request`) leave it when they are dropped.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._plain_functions = weakref.WeakSet()

    def ensure_sync(self, func):
        try:
            if func in self._plain_functions:
                return func
        except TypeError:  # cannot be weakly referenced: ask Flask each time
            return super().ensure_sync(func)
        synced = super().ensure_sync(func)
        if synced is func:
            self._plain_functions.add(func)
        return synced
