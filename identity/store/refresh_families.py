"""A user's refresh-token families, found without visiting the tokens they rotated.

Every refresh keeps the token it replaces until that one expires (its reuse revokes the family):
a family refreshed every minute for a month holds 43,000 rows, one of them live. What lists a
user's grants (the sessions and grants pages, consent, logout) must not read the rest.

An index of the live tokens alone (a partial one, on `consumed_at IS NULL`) did that, but it made
every rotation's UPDATE of `consumed_at` touch an indexed column: PostgreSQL then writes the new
row version into every index of the table instead of a heap-only (HOT) update, which cost the
refresh grant a fifth of its rate. So no index names `consumed_at` or `revoked_at`; instead the
user's families are enumerated through (user_id, family_id), one index descent a family (a
recursive "skip scan"), and each family's newest token is found through (family_id, issued_at).
A family's newest token is its only live one, if any: a rotation consumes the old token before
it stores the newer one, never issued before it (an instance whose clock is behind the one that
issued the old token stores the old token's issued_at), and a revocation ends them all.
"""

from sqlalchemy import bindparam, or_, select

from ..models import RefreshToken, User

_TOKENS = RefreshToken.__table__
USER = "families_user_id"  # the bind parameter LIVE takes: the user whose grants are read


def _newest_token_ids():
    """One id a family of the user's (bind parameter USER): its newest refresh token. Reads two
    index entries a family, whatever the number of tokens each has rotated."""
    user = bindparam(USER)
    step = _TOKENS.alias("step")
    families = select(select(step.c.family_id).where(step.c.user_id == user)
                      .order_by(step.c.family_id).limit(1).scalar_subquery().label("family_id")
                      ).cte("families", recursive=True)
    later = _TOKENS.alias("later")
    families = families.union_all(
        select(select(later.c.family_id).where(later.c.user_id == user, later.c.family_id > families.c.family_id)
               .order_by(later.c.family_id).limit(1).scalar_subquery())
        .where(families.c.family_id.is_not(None)))
    newest = _TOKENS.alias("newest")
    return (select(select(newest.c.id).where(newest.c.family_id == families.c.family_id)
                   .order_by(newest.c.issued_at.desc(), newest.c.id.desc()).limit(1).scalar_subquery())
            .where(families.c.family_id.is_not(None)))


# A token issued under the user's password version as it is now (NULL: stored before tokens kept
# it, judged as current), the refresh grant's rule (services: issued_under_current_password), in
# the statement that lists them: one primary-key lookup of the user, no statement more.
_UNDER_CURRENT_PASSWORD = or_(
    RefreshToken.password_version.is_(None),
    RefreshToken.password_version == select(User.password_version).where(User.id == bindparam(USER)).scalar_subquery())

# Conditions on RefreshToken: the newest token of one of the user's families, unused and unrevoked
# (one a grant its client may still hold, told when the user ends: a back-channel logout). Built
# once: building the recursive query took 2.8 ms of a password change's CPU. Execute with
# params(user_id).
UNREVOKED = (RefreshToken.id.in_(_newest_token_ids()), RefreshToken.consumed_at.is_(None),
             RefreshToken.revoked_at.is_(None))

# UNREVOKED and issued under the user's current password version: one a live grant, which the
# refresh grant still honours (the lists of a user's grants).
LIVE = (*UNREVOKED, _UNDER_CURRENT_PASSWORD)


def params(user_id: int) -> dict:
    """The parameters of a statement that uses LIVE or UNREVOKED, for this user."""
    return {USER: user_id}
