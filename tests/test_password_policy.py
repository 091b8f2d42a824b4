"""The one password policy (NIST SP 800-63B-4): length, blocklist, not the user's names, printable."""

import time

import pytest

from identity.services.password_policy import common_passwords, normalize, password_problems

TOO_SHORT = "Use at least 15 characters."
TOO_LONG = "Use at most 128 characters."
COMMON = "This password is too common; choose one that others are unlikely to use."
NAMES = "The password must not be your user name or email address."
SAME = "The new password must differ from the current one."
UNPRINTABLE = "Use printable characters only."


@pytest.fixture
def policy(app):
    with app.app_context():
        yield lambda password, **kwargs: password_problems(password, **kwargs)


REFUSED = {  # name: (password, keyword arguments, the problems)
    "empty": ("", {}, [TOO_SHORT]),
    "14 characters": ("abcdefg-hijklm", {}, [TOO_SHORT]),
    "129 characters": ("x" * 129, {}, [TOO_LONG]),
    "common": ("qwertyuiop12345", {}, [COMMON]),
    "common, upper case": ("QWERTYUIOP12345", {}, [COMMON]),
    "common, spaced": ("1234 qwer asdf zxcv", {}, [COMMON]),
    "common and short": ("password", {}, [TOO_SHORT, COMMON]),
    "user name": ("marguerite-delacroix", {"username": "marguerite-delacroix"}, [NAMES]),
    "user name, other case": ("Marguerite-Delacroix", {"username": "marguerite-delacroix"}, [NAMES]),
    "email": ("marguerite@example.org", {"email": "Marguerite@example.org"}, [NAMES]),
    "email's local part": ("marguerite.delacroix", {"email": "marguerite.delacroix@example.org"}, [NAMES]),
    "the current password": ("tulip-quartz-harbor-917", {"current": "tulip-quartz-harbor-917"}, [SAME]),
    "NUL": ("harbor-lantern\x00-917", {}, [UNPRINTABLE]),
    "tab": ("harbor\tlantern-917", {}, [UNPRINTABLE]),
    "bidi override": ("harbor-lantern\u202e-917", {}, [UNPRINTABLE]),
}


@pytest.mark.parametrize("password, kwargs, problems", REFUSED.values(), ids=REFUSED.keys())
def test_refused(policy, password, kwargs, problems):
    assert policy(password, **kwargs) == problems


ACCEPTED = {
    "15 characters": "fjord-amber-412",
    "64 characters": "a quiet lighthouse keeper counts seventeen gulls every morning..",
    "128 characters": "y" * 128,
    "all lower case, no digits": "velvet orchard whispers",
    "spaces": "    fifteen spaces    ",
    "unicode letters": "größe-ünïcödé-密码-пароль",
    "emoji": "🐧🐧 penguins march south 🐧🐧",
    "contains the user name": "alice-walks-her-dog-daily",
}


@pytest.mark.parametrize("password", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted(policy, password):
    assert policy(password, username="alice", email="alice@example.com", current="tulip-quartz-harbor-917") == []


def test_length_counts_characters_after_nfkc(policy):
    assert len(normalize("ﬀ" * 7)) == 14
    assert policy("ﬀ" * 7) == [TOO_SHORT]
    assert policy("ﬀ" * 8) == []


def test_no_composition_rules(policy):
    """Letters only, digits only and symbols only are all fine when long and uncommon."""
    for password in ("zqxjkvbwmplfhtr", "839201746152938", "!@#)(*&^%$-+=_~"):
        assert policy(password) == [], password


@pytest.mark.parametrize("app_config", [{"PASSWORD_MIN_LENGTH": 20}])
def test_minimum_length_setting(policy):
    assert policy("fjord-amber-412") == ["Use at least 20 characters."]
    assert policy("fjord-amber-412-mist") == []


def test_blocklist_is_large(app):
    assert len(common_passwords()) >= 20_000
    assert "password" in common_passwords()


def test_check_is_well_under_a_millisecond(policy):
    policy("warm-up-password-x")
    candidates = [f"candidate-password-{i}" for i in range(2000)]
    started = time.perf_counter()
    for candidate in candidates:
        policy(candidate, username="alice", email="alice@example.com", current="tulip-quartz-harbor-917")
    per_check = (time.perf_counter() - started) / len(candidates)
    assert per_check < 0.0005, f"{per_check * 1e6:.0f} µs per check"
