"""/readyz's verdict, logged whenever it changes in this process.

An orchestrator keeps a probe's body in its events at best, so an instance that stayed NotReady
showed only 503 request lines in its own log. The reason is logged once when it appears or
changes, and once more when the process is ready again; a probe every few seconds adds nothing.
"""

from __future__ import annotations

import logging

from flask import current_app

from . import key_encryption, keys
from .schema import readiness_problem

log = logging.getLogger("identity.readiness")

_LAST_PROBLEM = "identity.readiness.last_problem"


def readiness() -> str | None:
    """Why this process should not get traffic, or None: the database and schema
    (`readiness_problem`), then a signing key for each configured algorithm."""
    problem = detail = readiness_problem()
    if problem is None:
        try:
            for alg in keys.configured_algs():
                keys.signing_key(alg)
        except Exception as err:
            problem = detail = f"signing key not available: {type(err).__name__}"
            if isinstance(err, key_encryption.UndecryptableKey):
                # a setting to fix, which the balancer's probe alone sees (no request reaches a
                # worker that is not ready): the log says which key and what to do, the body
                # (anyone may read it) only the class
                detail = f"{problem}: {err}"
    _log_change(problem, detail)
    return problem


def _log_change(problem: str | None, detail: str | None = None) -> None:
    extensions = current_app.extensions
    last = extensions.get(_LAST_PROBLEM)
    if problem == last:
        return
    extensions[_LAST_PROBLEM] = problem
    if problem:
        log.warning("not ready: %s", detail or problem)
    else:
        log.warning("ready again (was: %s)", last)
