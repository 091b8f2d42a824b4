"""User names and addresses as they are compared and stored: normalized (case-insensitive), and
within their columns' sizes.

A leaf module (nothing of the service layer imported), so that the operator's input schemas can
apply the same rules as the account services.
"""

import unicodedata
from urllib.parse import urlsplit

MAX_USERNAME_LENGTH = 150  # users.username and users.username_normalized
MAX_EMAIL_LENGTH = 320  # users.email, users.email_normalized, users.pending_email


def normalize_login(value: str) -> str:
    """The key a user name or address is stored and looked up by: NFKC, case folded, NFKC again
    (Unicode's NFKC_Casefold, the width and case mapping of RFC 8265's user names). Case folding
    alone kept "café" typed as é and as e with a combining accent, or "ａｌｉｃｅ" in full-width
    letters (an input method's wide mode), apart from "café" and "alice": two accounts that look
    the same on every page and in every mail, and a user who could not sign in from a keyboard
    that spells their name the other way."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value.strip()).casefold())


def mailbox_key(address: str) -> str:
    """The key of the mailbox an address's mail goes to, for a budget of mails per address:
    normalize_login's, with an international domain in its IDNA form (the form mail is sent to,
    mailbox_problem: "v@bücher.example" is "v@xn--bcher-kva.example"), and without a `+tag`
    subaddress (RFC 5233), which Gmail, Outlook, Fastmail, iCloud and Postfix's default
    recipient_delimiter deliver to the mailbox without it ("v+1@example.org" is "v@example.org")."""
    key = normalize_login(address)
    local, at, domain = key.rpartition("@")
    if not at:
        return key
    local = local.partition("+")[0] or local
    if not domain.isascii():
        domain = (ascii_domain(domain) or domain).lower()
    return f"{local}@{domain}"


def length_problem(value: str, limit: int) -> str | None:
    """A user name's or address's length problem, or None when it fits its columns.

    Both the value and its normalized form are stored, and casefold() can make a value longer
    ("ß" becomes "ss", "ﬃ" becomes "ffi"), and so can NFKC ("㍿" becomes "株式会社"): checking the value alone let a normalized one past
    its column (which PostgreSQL refuses, and SQLite stores anyway).
    """
    if len(value.strip()) > limit:
        return f"Use at most {limit} characters."
    if len(normalize_login(value)) > limit:
        return f"Use at most {limit} characters, counting some letters as more than one (ß as ss)."
    return None


#: Unicode's bidirectional controls: each turns the direction of the text after it
_DIRECTION_MARKS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


#: Unicode's default-ignorable code points outside category C (DerivedCoreProperties.txt): marks
#: and letters that show nothing, such as U+034F (combining grapheme joiner), the Hangul fillers
#: U+115F, U+1160, U+3164 and U+FFA0, and the variation selectors
_INVISIBLE_NOT_C = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u3164\uffa0"
    + "".join(map(chr, range(0xFE00, 0xFE10))) + "".join(map(chr, range(0xE0100, 0xE01F0))))


def username_characters_problem(value: str) -> str | None:
    """A user name's character problem, or None. No spaces or @ (an @ names an address), as
    written or normalized (a full-width "＠" is "@" in the key, which is then an address's), and
    nothing Unicode calls "other" (category C): control characters, and format characters such
    as U+200B (zero width) or U+202E (right-to-left override), which make one user name look like
    another on a page or in a mail; nor the other characters Unicode says show nothing (a
    variation selector, a Hangul filler: "alice\u3164" looks like "alice")."""
    if any(c.isspace() or c == "@" for c in value + normalize_login(value)):  # "＠" is "@" once normalized
        return "Use a user name without spaces or @."
    if any(unicodedata.category(c).startswith("C") or c in _INVISIBLE_NOT_C for c in value):
        return "Use a user name without invisible or control characters."
    return None


def name_characters_problem(value: str) -> str | None:
    """A display name's character problem, or None: no control characters and no text-direction
    marks (a name goes into mails to any address). Other format characters stay: the zero-width
    joiners are part of how some scripts and emoji are written."""
    if any(unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn") or c in _DIRECTION_MARKS for c in value):
        return "Use a name without control characters or text-direction marks."
    return None


def mailbox_problem(address: str) -> str | None:
    """Why no mail can reach the address, or None: its part before the @ must be ASCII (the mail
    library cannot put another on an envelope: no SMTPUTF8). An international domain is fine: it
    is sent in its IDNA form, if that form names the same domain. The conversion (Python's IDNA
    codec, IDNA 2003) drops some characters (a soft hyphen, U+200B, a variation selector) and
    changes others (full-width letters, ß to ss): "bob@ex\u00adample.com" was mailed to
    bob@example.com, while the server took it for an address of nobody's, and called it verified
    once a link was followed from bob's mailbox."""
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        return "This server can send mail only to an address whose part before the @ is plain ASCII."
    if not domain.isascii() and ascii_domain(domain) is None:
        return "Mail to this domain as written would go to another domain, or to none: enter it as it is registered."
    return None


_DEFAULT_PORTS = {"http": 80, "https": 443}


def browser_origin(uri: str) -> tuple[str, str]:
    """A URI's host and origin as a browser writes them (RFC 6454's serialization, in the Origin
    header and WebAuthn's clientDataJSON): lower-case scheme and host, an international host in
    its IDNA form (as written if it has none: ascii_domain tells), an IPv6 host in brackets, no
    default port, no path."""
    parts = urlsplit(uri)
    scheme, host, port = parts.scheme.lower(), parts.hostname or "", parts.port
    if not host.isascii():
        host = ascii_domain(host) or host
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc += f":{port}"
    return host, f"{scheme}://{netloc}"


def ascii_domain(domain: str) -> str | None:
    """The domain's IDNA form (what mail goes to, what a browser puts in an Origin header), if it
    reads back as the domain itself but for case; else None (the conversion dropped or changed
    a character, or a label is too long or empty once converted)."""
    try:
        converted = domain.encode("idna").decode("ascii")
        if all(label.isascii() or label.encode("idna").decode("idna") == label.lower()
               for label in domain.split(".")):
            return converted
    except UnicodeError:
        pass
    return None
