"""The arrows between layers point one way: this reads every module's imports (without running
them) and fails on one that points back.

  web, api  ->  services  ->  store  ->  models      (api never imports web)
  oauth2 (the only Authlib)  ->  services

A route that reaches into the store skips the service that owns the transaction; a service that
reads the request (or imports a page) cannot be called from the CLI or the local API; a model
that imports a service, or a store that imports one, makes a cycle of "what" and "how".
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("identity", "api")

# (rule, importing module, imported name): a known leak that is still to be closed, each with a
# comment naming the change that will close it. A leak that is gone must leave this set (a test
# below fails otherwise), and a new one must not join it.
ALLOWED: set[tuple[str, str, str]] = set()  # known leaks still to close (none today)

# Deliberate and lasting: a failed request's session is rolled back by the error handlers.
EXEMPT = {
    ("web reaches persistence", "identity.web.errors", "identity.extensions.db"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(path: Path) -> set[str]:
    """Every module a file imports, and every `module.name` it imports from one, relative
    imports made absolute (`from ..store import grants` gives identity.store and
    identity.store.issued_grants)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def persistence(name: str) -> bool:
    """The store, or what it is built of. SQLAlchemy's exceptions are not: the error pages map
    a database failure to 503."""
    return (under(name, "identity.store") or under(name, "identity.models") or name == "identity.extensions.db"
            or (under(name, "sqlalchemy") and not under(name, "sqlalchemy.exc")))


# (rule, does it apply to this module, is this import forbidden, what to report)
RULES = [
    ("web reaches persistence", lambda m: under(m, "identity.web"), persistence, None),
    ("services import web", lambda m: under(m, "identity.services"),
     lambda n: under(n, "identity.web") or under(n, "identity.oauth2") or under(n, "api"), None),
    ("services import flask's request", lambda m: under(m, "identity.services"),
     lambda n: n == "flask.request", "flask.request"),
    ("models import services", lambda m: under(m, "identity.models"), lambda n: under(n, "identity.services"), None),
    ("api imports web", lambda m: under(m, "api"), lambda n: under(n, "identity.web"), None),
    ("Authlib outside oauth2/", lambda m: not under(m, "identity.oauth2"), lambda n: under(n, "authlib"), "authlib"),
    ("store imports services", lambda m: under(m, "identity.store"), lambda n: under(n, "identity.services"), None),
]


def violations() -> set[tuple[str, str, str]]:
    found = set()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue  # Alembic's scripts: run by the CLI only
            module = module_name(path)
            names = imported_names(path)
            for rule, applies, forbidden, label in RULES:
                if not applies(module):
                    continue
                hits = {name for name in names if forbidden(name)}
                # one report per imported module, not per name imported from it (ALLOWED stays short)
                found.update((rule, module, label or name) for name in hits if name.rpartition(".")[0] not in hits)
    return found - EXEMPT


# Committing is the services' and the store's job; schema setup commits the standard resources a
# service added (database.py), as the CLI's `flask db upgrade` would.
COMMITS_ALLOWED_IN = ("identity.services", "identity.store", "identity.services.schema")


def commits_outside_services() -> set[str]:
    found = set()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = module_name(path)
            if "migrations" in path.parts or any(under(module, allowed) for allowed in COMMITS_ALLOWED_IN):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "commit"):
                    found.add(f"{module}:{node.lineno}")
    return found


def test_only_services_and_the_store_commit():
    assert commits_outside_services() == set()


def test_every_module_is_read():
    modules = {module_name(path) for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    assert {"identity.store.issued_grants", "identity.services.issued_grants", "identity.web.account", "api.views"} <= modules


def test_the_checker_sees_relative_imports():
    names = imported_names(ROOT / "identity" / "services" / "issued_grants.py")
    assert "identity.store.issued_grants" in names and "identity.services.audit" in names


def test_no_arrow_points_the_wrong_way():
    found = violations()
    assert found - ALLOWED == set(), "imports against the layers (see this module's docstring)"


def test_allowed_leaks_are_still_there():
    """An entry of ALLOWED whose leak is gone must leave the set (so it cannot hide a new one)."""
    assert ALLOWED - violations() == set()
