"""Scopes: API scopes (operator-defined) and identity resources (always present)."""

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from ..clock import now
from ..constants import LOCAL_API_SCOPE, STANDARD_IDENTITY_RESOURCES
from ..errors import Conflict, NotFound
from ..extensions import db
from ..models import ApiScope, Client, IdentityResource
from ..store import issued_grants, listing
from . import audit


def ensure_standard_resources() -> bool:
    """Create the standard identity resources and the local API scope if missing; True if it added any."""
    added = False
    existing = set(db.session.scalars(select(IdentityResource.name)))
    for name, (display, claims) in STANDARD_IDENTITY_RESOURCES.items():
        if name not in existing:
            db.session.add(IdentityResource(name=name, display_name=display, claims=claims))
            added = True
    if db.session.scalar(select(ApiScope).where(ApiScope.name == LOCAL_API_SCOPE)) is None:
        db.session.add(ApiScope(name=LOCAL_API_SCOPE, display_name="Manage your account (local API)"))
        added = True
    return added


def api_scope_names() -> set[str]:
    return set(db.session.scalars(select(ApiScope.name)))


def all_scope_names() -> set[str]:
    return api_scope_names() | set(STANDARD_IDENTITY_RESOURCES)


def scope_display_names() -> dict[str, str | None]:
    """Every scope's display name by its name: identity resources and API scopes."""
    shown = dict(db.session.execute(select(IdentityResource.name, IdentityResource.display_name)).all())
    shown.update(db.session.execute(select(ApiScope.name, ApiScope.display_name)).all())
    return shown


def display_names(scopes: list[str], shown: dict[str, str | None] | None = None) -> list[tuple[str, str]]:
    """Return (scope, display name) pairs for a consent screen; `shown`: scope_display_names(),
    read once by a page that names the scopes of many apps."""
    if shown is None:
        shown = scope_display_names()
    return [(s, shown.get(s) or s) for s in scopes]


def list_api_scopes() -> list[ApiScope]:
    return listing.by_code_point(ApiScope, ApiScope.name)


def add_api_scope(name: str, display_name: str | None = None, description: str | None = None) -> ApiScope:
    if name in all_scope_names():
        raise Conflict(f"scope {name!r} already exists")
    scope = ApiScope(name=name, display_name=display_name, description=description)
    db.session.add(scope)
    try:
        db.session.flush()
    except IntegrityError:
        # the same scope added at once by another command (or seed): refused as when added after it
        db.session.rollback()
        if name in all_scope_names():
            raise Conflict(f"scope {name!r} already exists") from None
        raise
    audit.record("scope_added", detail={"scope": name})
    db.session.commit()
    return scope


def remove_api_scope(name: str) -> None:
    if name == LOCAL_API_SCOPE:
        raise Conflict(f"{LOCAL_API_SCOPE} is the local API's scope; it always exists")
    scope = db.session.scalar(select(ApiScope).where(ApiScope.name == name))
    if scope is None:
        db.session.rollback()  # the read's transaction: nothing to do
        raise NotFound(f"no API scope {name!r}")
    # one statement that says whether it removed the row: the same command run twice at once
    # waits here for the other's commit, and then finds the scope gone, as when run after it
    if db.session.execute(delete(ApiScope).where(ApiScope.id == scope.id)).rowcount == 0:
        db.session.rollback()
        raise NotFound(f"no API scope {name!r}")
    # the clients read after the DELETE: a client command that locked the scope to allow it
    # (store/scopes.py) has committed by now, and one that comes later finds the scope gone
    users = [c.client_id for c in db.session.scalars(select(Client)) if name in c.allowed_scopes]
    if users:
        db.session.rollback()
        raise Conflict(f"scope {name!r} is allowed for clients {', '.join(users)}; remove it from them first")
    # a scope added later under this name is another one: what was granted for this one (a
    # remembered consent, an open code or refresh token) must not answer for it
    issued_grants.drop_scope(name, now())
    audit.record("scope_removed", detail={"scope": name})
    db.session.commit()
