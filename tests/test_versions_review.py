"""The version ranges pyproject.toml declares, against what the code needs.

A user who installs the project where some of its dependencies already are keeps any installed
version inside the declared range (pip does not upgrade a satisfied requirement), and a packager
builds against the lowest one; the suite itself runs on the newest. Each floor here is the lowest
release under which the code was seen to work (in a second environment with every runtime
dependency at its lowest allowed release), for a package the code imports itself. The failures
under the old ranges are in the commit messages; these checks read pyproject.toml only, so they
install nothing."""

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.database_independent


def _runtime_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(line) for line in project["dependencies"]]
    return {requirement.name.lower(): requirement for requirement in requirements}


def _floor(requirement: Requirement | None) -> Version | None:
    """The lowest release `requirement` allows by its >=, > or == clauses (None: no floor at all)."""
    floors = [Version(spec.version) for spec in (requirement.specifier if requirement else [])
              if spec.operator in (">=", ">", "==", "~=")]
    return max(floors, default=None)


@pytest.mark.parametrize("name, needed, why", [
    # identity/web/forms.py imports wtforms.widgets.core.clean_key (WTForms 3.0); Flask-WTF
    # requires "wtforms" with no version, so WTForms 2.3.3 satisfied every declared requirement
    # and the app did not import
    ("wtforms", "3.0", "identity/web/forms.py: from wtforms.widgets.core import clean_key"),
    # identity/migrations/env.py runs on Alembic, which Flask-Migrate 4.0.0-4.0.1 takes at >=0.7:
    # under the SQLAlchemy 2.0 this project requires, Alembic before 1.7.2 fails on import
    # (1.7.0-1.7.1: NameError: name 'TextClause' is not defined; 1.6 and older: ImportError:
    # _BindParamClause), so `flask db upgrade` and `flask seed` (`make run`) failed
    ("alembic", "1.7.2", "identity/migrations/env.py: from alembic import context"),
    # identity/config/startup.py lets RATELIMIT_STORAGE_OPTIONS' key_prefix through as the limits
    # package's own option, which its Redis store takes only from 5.1; Flask-Limiter 3.8 takes
    # limits from 3.13, where redis-py got key_prefix: every connection failed with TypeError
    # and each worker counted every limit in its own memory ("storage unreachable") for good
    ("limits", "5.1", "RedisStorage(key_prefix=...) (identity/config/startup.py, _LIMITS_OWN_OPTIONS)"),
])
def test_a_package_the_code_imports_is_declared_at_the_release_it_needs(name, needed, why):
    requirement = _runtime_requirements().get(name)
    floor = _floor(requirement)
    assert floor is not None and floor >= Version(needed), (
        f"pyproject.toml declares {requirement or f'no {name}'} (lowest allowed: {floor or 'any'}); "
        f"the code needs {name}>={needed}: {why}")
