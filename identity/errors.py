"""The domain's exceptions.

IdentityError
 ├── ValidationFailed      bad input; .errors maps field -> [messages]
 ├── NotFound              no such user, client, scope
 ├── Conflict              already exists
 ├── AccountLocked         too many failures; .retry_after seconds
 ├── PasskeyRefused        a passkey ceremony that failed; the message is for the person
 ├── SecondFactorRequired  the user has a second factor and none was given (or a wrong code)
 ├── SignInTooOld          a change that needs a recent sign-in, asked by an older one
 ├── CredentialSuperseded  a change asked with a token older than the password changed meanwhile
 ├── AlreadyDone           the same form sent again after its first copy made the change
 └── InvalidLink           a one-time link that is unknown, expired, used or superseded; .reason
"""

import functools
from typing import Any, Callable


class IdentityError(Exception):
    pass


class ValidationFailed(IdentityError):
    def __init__(self, errors: dict[str, list[str]], message: str = "validation failed"):
        super().__init__(message)
        self.errors = errors

    def __str__(self) -> str:
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in self.errors.items())


class NotFound(IdentityError):
    pass


class Conflict(IdentityError):
    pass


def answered_if_user_removed(answer: Callable[[], Any]):
    """A decorator for a view whose services find no row for the user it acts for (NotFound:
    `flask users remove` committed after the request found her): the view answers `answer()` (a
    page's or an API's own, which may raise) as the next request will be answered. Only on views
    where a NotFound can mean nothing but the user."""
    def decorator(view):
        @functools.wraps(view)
        def answered(*args, **kwargs):
            try:
                return view(*args, **kwargs)
            except NotFound:
                return answer()
        return answered
    return decorator


class AccountLocked(IdentityError):
    def __init__(self, retry_after: int):
        super().__init__("account is temporarily locked")
        self.retry_after = retry_after

    @property
    def page_message(self) -> str:
        """What a page tells the signed-in person (who knows the account exists)."""
        return f"Too many wrong attempts. Try again in {self.retry_after} seconds."


class PasskeyRefused(IdentityError):
    """A passkey registration or sign-in that did not verify; str() is safe to show the person."""


class SecondFactorRequired(IdentityError):
    """A change that needs the user's second factor (a code, or a recent sign-in with it) got neither."""


class SignInTooOld(IdentityError):
    """A change that needs a recent sign-in (mfa.prove_recent_sign_in) asked by an older one."""


class CredentialSuperseded(IdentityError):
    """A change asked with a credential (an access token) issued before the user's password changed,
    by another request that committed first: the caller is refused as its credential now is."""


class AlreadyDone(IdentityError):
    """The same form sent again (a double click, a browser's resend) after its first copy made the
    change moments ago: nothing more to do, and nothing went wrong."""


class InvalidLink(IdentityError):
    def __init__(self, reason: str):
        super().__init__(f"the link is {reason}")
        self.reason = reason  # "unknown", "expired", "used" or "superseded"
