"""What `pip install .` (docs/deployment.md) installs: every page, mail template, static file and
migration the checkout serves from, so an installed server runs outside the checkout too."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.database_independent

#: the data directories the installed code reads at run time (templates/ with the mails' .txt parts)
DATA_DIRECTORIES = ("templates", "static", "identity/migrations")


def _tracked(directory: str) -> set[str]:
    out = subprocess.run(["git", "ls-files", directory], cwd=ROOT, capture_output=True, text=True, check=True)
    return {line for line in out.stdout.splitlines() if not line.endswith(".py")}


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory):
    """The file names in the wheel `pip install .` builds, made from a copy of the tracked files
    (pip builds in the source tree; the checkout stays as it is)."""
    pytest.importorskip("setuptools")
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout")
    source = tmp_path_factory.mktemp("source")
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in files.splitlines():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(source)], check=True, capture_output=True)
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


@pytest.mark.parametrize("directory", DATA_DIRECTORIES)
def test_pip_install_dot_installs_every_data_file(wheel_names, directory):
    """templates/mail/*.txt (every mail's text part and subject) were left out of the wheel, so a
    server installed with `pip install .` and run outside the checkout failed every mail with
    TemplateNotFound: no reset link, verification link or notice was ever sent."""
    missing = sorted(_tracked(directory) - wheel_names)
    assert missing == []
