"""What the account pages say when a change needs a second factor the session has not shown."""

from flask import flash, redirect, url_for

from ..plumbing.login_session import drop_pending, pending_sign_in
from ..services import mfa

NEEDS_CODE = "Enter a code from your authenticator app, or a recovery code."
NEEDS_SIGN_IN = "Sign out and sign in again with your second factor first: your sign-in did not use it recently."
NEEDS_RECENT_SIGN_IN = ("Sign out and sign in again first: a sign-in method is added only within a few minutes of "
                        "signing in.")
#: flashed on the sign-in page when a second step is posted after its half-signed-in state ended
STEP_ENDED = "The sign-in waited too long for its second step, or ended already. Sign in again."
#: flashed on the sign-in page when the account's second factors were removed during its second step
#: (`users mfa-reset` for a lost phone, or the app removed in another browser): the password alone signs in now
FACTORS_REMOVED = "Your account has no second factor any more. Sign in with your password."
NEEDS_PASSKEY = "Your second factor is a passkey: sign out and sign in again with your passkey, then come back here."
#: a change refused for a second factor that was removed before the page could say which one (the
#: page's words for what the local API says as mfa.APP_REMOVED_AS_CHECKED)
FACTORS_CHANGED = "Your second factors changed while this was being checked. Please try again."


def second_factor_refusal(user_id: int, *, recent_mfa: bool) -> tuple[str | None, dict[str, list[str]]]:
    """A page's answer to a change refused for want of a second factor: the factor the account
    has now (mfa.factor_to_prove), not the one the page found before the change (a first one may
    have been set up since, or the last one removed), for second_factor_fields; and its message:
    a code in its field, or, for a passkey-only user, who has no code to give, a new sign-in; for
    none, a new try."""
    factor = mfa.factor_to_prove(user_id, recent_mfa=recent_mfa)
    if factor is None:
        return factor, {"form": [FACTORS_CHANGED]}
    return factor, {"form": [NEEDS_PASSKEY]} if factor == mfa.PASSKEY else {"otp": [NEEDS_CODE]}


def second_factor_fields(factor: str | None) -> dict:
    """What the password and address pages show for it: the code field, or the passkey's message."""
    return {"needs_otp": factor == mfa.CODE, "needs_passkey": NEEDS_PASSKEY if factor == mfa.PASSKEY else None}


def factors_removed_meanwhile(user_id: int, return_url: str | None):
    """For a second step (a code or a passkey) whose user has no second factor left: the answer
    that sends them back to the sign-in page, saying why, else None. Nothing is checked, so
    nothing is counted toward the lockout. Factors removed (`users mfa-reset` for a lost phone,
    or the app removed in another browser since the password): the password alone signs them in
    now (FACTORS_REMOVED). The user removed (`users remove`: the factors went with the row), or
    the sign-in ended otherwise meanwhile: the sign-in is over (STEP_ENDED, as for a step posted
    after that), which tells no more than the sign-in page would."""
    if mfa.has_second_factor(user_id):
        return None
    flash(FACTORS_REMOVED if pending_sign_in() is not None else STEP_ENDED, "info")
    drop_pending()
    return redirect(url_for("account.login", returnUrl=return_url) if return_url else url_for("account.login"))
