"""The domain's exceptions.

IdentityError
 ├── ValidationFailed      bad input; .errors maps field -> [messages]
 ├── NotFound              no such user, client, scope
 ├── Conflict              already exists
 ├── AccountLocked         too many failures; .retry_after seconds
 └── InvalidLink           a one-time link that is unknown, expired or used; .reason
"""


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


class AccountLocked(IdentityError):
    def __init__(self, retry_after: int):
        super().__init__("account is temporarily locked")
        self.retry_after = retry_after


class InvalidLink(IdentityError):
    def __init__(self, reason: str):
        super().__init__(f"the link is {reason}")
        self.reason = reason  # "unknown", "expired" or "used"
