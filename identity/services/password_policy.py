"""The one password policy (NIST SP 800-63B-4): length, blocklist, not the user's own names.

No composition rules. The blocklist is zxcvbn's 30,000 most common passwords, held in
a frozenset so a check costs a hash lookup, not a scan.
"""

import importlib.util
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

from flask import current_app

# The line of zxcvbn/frequency_lists.py that holds the list: `    "passwords": "123456,password,...".split(","),`
# The body is matched as runs between escapes, so the regex repeats once per escape, not once per
# character (which would take ~30 MiB of backtracking stack for the 240 kB line).
_PASSWORDS_LINE = re.compile(r'^\s*"passwords":\s*"([^"\\]*(?:\\.[^"\\]*)*)"\.split\(","\),?\s*$')
_ESCAPE = re.compile(r"\\(.)")


def _unescape(literal: str) -> list[str] | None:
    """A string literal's value (its body between the quotes), split at commas.

    The list holds one escape (`pic\\'s`); None for any escape other than \\\\ \\' \\" (e.g. \\n, \\x41).
    """
    if any(ch not in "\\'\"" for ch in _ESCAPE.findall(literal)):
        return None
    return _ESCAPE.sub(r"\1", literal).split(",")


def _passwords_from_source() -> list[str] | None:
    """zxcvbn's password list, read from its source as text.

    Importing zxcvbn builds all six of its lists (names, English words, TV and film words too),
    ~13 MiB that a worker would keep for good; this reads the one line the policy uses.
    None when the file is not laid out as expected (then the caller imports the list).
    """
    spec = importlib.util.find_spec("zxcvbn")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "frequency_lists.py"
    try:
        with path.open(encoding="utf-8") as source:
            for line in source:
                match = _PASSWORDS_LINE.match(line)
                if match:
                    return _unescape(match.group(1))
    except OSError:
        return None
    return None


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    passwords = _passwords_from_source()
    if passwords is None:
        from zxcvbn.frequency_lists import FREQUENCY_LISTS

        passwords = FREQUENCY_LISTS["passwords"]
    return frozenset(passwords)


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
