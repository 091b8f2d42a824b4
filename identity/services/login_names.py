"""User names and addresses as they are compared and stored: normalized (case-insensitive), and
within their columns' sizes.

A leaf module (nothing of the service layer imported), so that the operator's input schemas can
apply the same rules as the account services.
"""

MAX_USERNAME_LENGTH = 150  # users.username and users.username_normalized
MAX_EMAIL_LENGTH = 320  # users.email, users.email_normalized, users.pending_email


def normalize_login(value: str) -> str:
    return value.strip().casefold()


def length_problem(value: str, limit: int) -> str | None:
    """A user name's or address's length problem, or None when it fits its columns.

    Both the value and its normalized form are stored, and casefold() can make a value longer
    ("ß" becomes "ss", "ﬃ" becomes "ffi"): checking the value alone let a normalized one past
    its column (which PostgreSQL refuses, and SQLite stores anyway).
    """
    if len(value.strip()) > limit:
        return f"Use at most {limit} characters."
    if len(normalize_login(value)) > limit:
        return f"Use at most {limit} characters, counting some letters as more than one (ß as ss)."
    return None
