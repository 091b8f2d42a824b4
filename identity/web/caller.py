"""Who is calling: the web layer tells the services the caller's address and user agent for each request.

The audit log records the address with every event (services/audit.py); new sessions and
refresh tokens keep both, bounded, for the sessions page (services/user_agents.py). Reading it here, where requests
are handled, keeps the services free of Flask's `request`: they serve commands and tests alike.
The address is the one ProxyFix has corrected (TRUST_PROXY_HOPS), as the rate limits see it.
"""

from flask import Flask

from ..current import current_request
from ..services import audit, user_agents


def _remember_caller() -> None:
    request = current_request()
    audit.caller_ip.set(request.remote_addr)
    user_agents.caller_agent.set(request.headers.get("User-Agent"))  # kept with sessions and refresh tokens


def _forget_caller(_exc=None) -> None:
    audit.caller_ip.set(None)  # the thread's next work may be no request at all
    user_agents.caller_agent.set(None)


def init_app(app: Flask) -> None:
    """Before every other hook (pages, protocol endpoints, the local API), and cleared after each request."""
    app.before_request_funcs.setdefault(None, []).insert(0, _remember_caller)
    app.teardown_request(_forget_caller)
