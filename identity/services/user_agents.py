"""The caller's device as the sessions page shows it: a bounded user agent, a truncated address.

Sessions and refresh tokens keep what their caller sent when they were created or refreshed,
so a person can tell "Firefox on Linux" from "okhttp" at a glance. Only what that needs is kept:
the user agent cut to its column's length, and the address cut to its network (/24 for IPv4,
/48 for IPv6), which names a place without naming a household. The web layer tells this module
who is calling (`caller_agent`, beside audit.caller_ip); outside a request both are None.
"""

import ipaddress
import re
from contextvars import ContextVar
from typing import NamedTuple

from . import audit

MAX_USER_AGENT = 200  # characters kept (the columns' length)

#: The User-Agent header of the request this thread is serving (None between requests).
caller_agent: ContextVar[str | None] = ContextVar("identity_caller_agent", default=None)


class Device(NamedTuple):
    user_agent: str | None
    ip_address: str | None


def bounded_user_agent(value: str | None) -> str | None:
    """The user agent without control characters, cut to MAX_USER_AGENT; None when empty."""
    if not value:
        return None
    cleaned = "".join(ch for ch in value if ch.isprintable()).strip()
    return cleaned[:MAX_USER_AGENT] or None


def truncated_ip(value: str | None) -> str | None:
    """The network of an address: 203.0.113.7 -> 203.0.113.0/24, 2001:db8:1:2::1 -> 2001:db8:1::/48."""
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def caller_device() -> Device:
    """The device of the request being served, as it is stored."""
    return Device(bounded_user_agent(caller_agent.get()), truncated_ip(audit.caller_ip.get()))


# --- the summary ------------------------------------------------------------------------------

# Checked in order: Edge and Opera also say "Chrome", Chrome also says "Safari".
_BROWSERS = (
    ("Edge", r"\bEdg(?:e|A|iOS)?/"),
    ("Opera", r"\b(?:OPR|Opera)/"),
    ("Samsung Internet", r"\bSamsungBrowser/"),
    ("Firefox", r"\b(?:Firefox|FxiOS)/"),
    ("Chrome", r"\b(?:Chrome|CriOS|Chromium|HeadlessChrome)/"),
    ("Safari", r"\bVersion/[\d.]+.*\bSafari/"),
)
_SYSTEMS = (
    ("iOS", r"\b(?:iPhone|iPad|iPod)\b"),
    ("Android", r"\bAndroid\b"),
    ("ChromeOS", r"\bCrOS\b"),
    ("Windows", r"\bWindows\b"),
    ("macOS", r"\bMac OS X\b|\bMacintosh\b"),
    ("Linux", r"\bLinux\b"),
)
_PRODUCT = re.compile(r"^([A-Za-z][\w.\-]{0,39})(?:/[\w.\-]+)?")


def _first(table, text: str) -> str | None:
    return next((name for name, pattern in table if re.search(pattern, text)), None)


def summarise(user_agent: str | None) -> str:
    """A person's words for a user agent: "Chrome on Android", "Firefox", "okhttp", "Unknown device"."""
    if not user_agent:
        return "Unknown device"
    browser, system = _first(_BROWSERS, user_agent), _first(_SYSTEMS, user_agent)
    if browser and system:
        return f"{browser} on {system}"
    if browser or system:
        return browser or system
    product = _PRODUCT.match(user_agent)  # an app's HTTP library: okhttp/4.12, Dart/3.4, curl/8.5
    return product.group(1) if product else "Unknown device"
