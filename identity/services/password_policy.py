"""The one password policy (NIST SP 800-63B-4): length, blocklist, not the user's own names.

No composition rules. The blocklist is zxcvbn's 30,000 most common passwords, held in
a frozenset so a check costs a hash lookup, not a scan.
"""

import unicodedata
from functools import lru_cache

from flask import current_app


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def normalize(password: str) -> str:
    """NFKC-normalize as NIST asks, so equivalent Unicode spellings hash the same."""
    return unicodedata.normalize("NFKC", password)


def _is_printable(password: str) -> bool:
    return all(ch == " " or ch.isprintable() for ch in password)


def password_problems(
    password: str, *, username: str | None = None, email: str | None = None, current: str | None = None
) -> list[str]:
    """Return every rule the password breaks (empty when it is acceptable)."""
    cfg = current_app.config
    min_len, max_len = cfg["PASSWORD_MIN_LENGTH"], cfg["PASSWORD_MAX_LENGTH"]
    pw = normalize(password)
    problems = []
    if len(pw) < min_len:
        problems.append(f"Use at least {min_len} characters.")
    if len(pw) > max_len:
        problems.append(f"Use at most {max_len} characters.")
    if not _is_printable(pw):
        problems.append("Use printable characters only.")
    folded = pw.casefold()
    if folded in common_passwords() or folded.replace(" ", "") in common_passwords():
        problems.append("This password is too common; choose one that others are unlikely to use.")
    names = {n.casefold() for n in (username, email) if n}
    if email and "@" in email:
        names.add(email.split("@", 1)[0].casefold())
    if folded in names:
        problems.append("The password must not be your user name or email address.")
    if current is not None and pw == normalize(current):
        problems.append("The new password must differ from the current one.")
    return problems
