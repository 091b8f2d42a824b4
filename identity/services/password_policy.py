"""The one password policy (NIST SP 800-63B-4), judged by how guessable a password is.

No composition rules; at least 64 characters allowed; every printable character and the space
allowed. A candidate is refused when it is too short or too long, has unprintable characters, is
only spaces, is the user's own name or email, is one of zxcvbn's 30,000 most common passwords,
has too few different characters, or when zxcvbn estimates it takes fewer than
PASSWORD_MIN_GUESSES_LOG10 (10^11) guesses. That estimate sees repeats, sequences, keyboard walks,
dates, l33t spellings and dictionary words (English, names, TV and film, common passwords), and
the user's name, user name, email and the service's name, so `passwordpassword` and
`erinerinerinerin` are refused although neither is on any list. The thresholds were chosen by
measurement over tests/data/ (see docs/passwords.md).

zxcvbn's matching grows faster than linearly with length (about 25 ms for 32 characters, 70 ms
for 64 on a loaded 2-core box), so it judges the first ESTIMATE_CHARACTERS characters only:
beyond that, a password that has passed is only longer. It is imported on the first check, never
by a worker that only signs people in (its dictionaries take about 12 MiB).
"""

import math
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

from flask import current_app

from ..constants import PASSWORD_INPUT_MAX

ESTIMATE_CHARACTERS = 32

TOO_COMMON = "This password is too common; choose one that others are unlikely to use."
OWN_NAME = "The password must not be your user name or email address."
ONLY_SPACES = "A password of only spaces is easy to guess. Use a few words (spaces between them are fine)."
SAME_AS_CURRENT = "The new password must differ from the current one."
ADVICE = "Use a passphrase of three or four unrelated words; symbols, digits and capitals are not needed."


def normalize(password: str) -> str:
    """NFKC-normalize as NIST asks, so equivalent Unicode spellings hash the same."""
    return unicodedata.normalize("NFKC", password)


def confirmed(password: str, confirmation: str) -> bool:
    """Whether the confirmation is the same password, however spelled (normalize): the two are
    compared as they would be hashed, not as typed."""
    return normalize(password) == normalize(confirmation)


def _is_printable(password: str) -> bool:
    return all(ch == " " or ch.isprintable() for ch in password)


@lru_cache(maxsize=1)
def _zxcvbn():
    """zxcvbn's matcher, scorer and feedback (imported on the first check: its dictionaries packed, ~3 MiB)."""
    from .dictionary_match import load_matching

    matching = load_matching()  # the same matches, in less time and memory
    from zxcvbn import feedback, scoring

    return matching, scoring, feedback


def common_passwords():
    """zxcvbn's 30,000 most common passwords (a dict: password -> rank, 1 the most common)."""
    matching, _, _ = _zxcvbn()
    return matching.RANKED_DICTIONARIES["passwords"]


_WORDS = re.compile(r"[^\W_]+")


def user_inputs(*, username: str | None = None, email: str | None = None, name: str | None = None) -> list[str]:
    """What an attacker who targets this user would try first: their names, their email and its
    parts, and the service's name, whole and word by word (zxcvbn ranks them as the likeliest words)."""
    product = current_app.config.get("PRODUCT_NAME") or ""
    inputs: list[str] = []
    for value in (username, email, email.split("@", 1)[0] if email and "@" in email else None, name, product):
        if value:
            folded = normalize(value).casefold()
            inputs.append(folded)
            inputs.extend(word for word in _WORDS.findall(folded) if len(word) > 2)
    return list(dict.fromkeys(inputs))


@dataclass
class Estimate:
    guesses_log10: float
    sequence: list = field(default_factory=list)  # zxcvbn's matches, of which the guess is made

    @property
    def warning(self) -> str:
        """zxcvbn's reason, e.g. 'Repeats like "aaa" are easy to guess.'; made only when asked
        (for a password refused): zxcvbn's feedback looks for its translations on the disk, four
        stat calls, each time."""
        if any(match.get("dictionary_name") == "user_inputs" for match in self.sequence):
            return "It contains your name, your email address or this service's name."
        if self.sequence:
            _, _, feedback = _zxcvbn()
            return feedback.get_feedback(0, self.sequence).get("warning") or ""
        return ""


def estimate(password: str, inputs: list[str]) -> Estimate:
    """zxcvbn's guesses estimate for the (already normalized) password's first ESTIMATE_CHARACTERS."""
    matching, scoring, _ = _zxcvbn()
    candidate = password[:ESTIMATE_CHARACTERS]
    # zxcvbn() itself stores the user inputs in a module-wide dict; a copy keeps checks independent
    dictionaries = dict(matching.RANKED_DICTIONARIES)
    dictionaries["user_inputs"] = matching.build_ranked_dict(inputs)
    result = scoring.most_guessable_match_sequence(candidate, matching.omnimatch(candidate, dictionaries))
    return Estimate(math.log10(max(result["guesses"], 1)), result["sequence"])


@dataclass
class Verdict:
    """The policy's answer for a candidate, as the page's strength meter shows it."""

    problems: list[str] = field(default_factory=list)
    guesses_log10: float | None = None  # None when not estimated (too short, or refused before)

    @property
    def acceptable(self) -> bool:
        return not self.problems


def _guessable(pw: str, inputs: list[str], names: set[str], cfg) -> tuple[str | None, float | None]:
    """The first reason the password is easy to guess (or None), and zxcvbn's estimate if it ran."""
    folded = pw.casefold()
    if folded in names:
        return OWN_NAME, None
    common = common_passwords()
    if folded in common or folded.replace(" ", "") in common:
        return TOO_COMMON, None
    distinct = cfg["PASSWORD_MIN_DISTINCT_CHARACTERS"]
    if len(set(folded)) < distinct:
        return (f"This password uses fewer than {distinct} different characters, so it is easy to guess. "
                + ADVICE), None
    found = estimate(pw, inputs)
    if found.guesses_log10 < cfg["PASSWORD_MIN_GUESSES_LOG10"]:
        reason = f" ({found.warning.rstrip('.')})" if found.warning else ""
        return f"This password is easy to guess{reason}. " + ADVICE, found.guesses_log10
    return None, found.guesses_log10


def too_long() -> str:
    """The message for a password past PASSWORD_MAX_LENGTH, also what the input cap (a field's, a
    body's: PASSWORD_INPUT_MAX) says, so the pages, the meter and the local API say the same."""
    return f"Use at most {current_app.config['PASSWORD_MAX_LENGTH']} characters."


def check_password(
    password: str, *, username: str | None = None, email: str | None = None, name: str | None = None,
    current: str | None = None,
) -> Verdict:
    """Judge a candidate password for this user: every rule it breaks, and zxcvbn's estimate.
    Past the input cap (PASSWORD_INPUT_MAX), only that it is too long: what the forms say of it."""
    cfg = current_app.config
    min_len, max_len = cfg["PASSWORD_MIN_LENGTH"], cfg["PASSWORD_MAX_LENGTH"]
    if len(password) > PASSWORD_INPUT_MAX:
        return Verdict([too_long()])
    pw = normalize(password)
    verdict = Verdict()
    problems = verdict.problems
    if len(pw) < min_len:
        problems.append(f"Use at least {min_len} characters.")
    if len(pw) > max_len:
        problems.append(too_long())
    if not _is_printable(pw):
        problems.append("Use printable characters only.")
    if pw and not pw.strip(" "):
        problems.append(ONLY_SPACES)
    elif len(pw) >= min_len:
        names = {n for n in (normalize(username).casefold() if username else None,
                             normalize(email).casefold() if email else None) if n}
        if email and "@" in email:
            names.add(normalize(email).split("@", 1)[0].casefold())
        inputs = user_inputs(username=username, email=email, name=name)
        reason, verdict.guesses_log10 = _guessable(pw, inputs, names, cfg)
        if reason:
            problems.append(reason)
    elif pw.casefold() in common_passwords():
        problems.append(TOO_COMMON)
    if current is not None and pw == normalize(current):
        problems.append(SAME_AS_CURRENT)
    return verdict


def password_problems(
    password: str, *, username: str | None = None, email: str | None = None, name: str | None = None,
    current: str | None = None,
) -> list[str]:
    """Return every rule the password breaks (empty when it is acceptable)."""
    return check_password(password, username=username, email=email, name=name, current=current).problems
