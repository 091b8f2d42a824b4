"""`make run` installs only what serving needs and honours PORT; `make test` installs the test extra.

Read from `make -n -B` (print every recipe, run none), so nothing is installed here.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def dry_run(*args: str) -> list[str]:
    result = subprocess.run(["make", "-n", "-B", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def installs(lines: list[str]) -> list[str]:
    return [line for line in lines if "pip install" in line and "--target" not in line and "install -q uv" not in line]


def test_make_run_installs_the_project_without_the_test_extra():
    lines = dry_run("run")

    project = installs(lines)
    assert project and all("-e ." in line for line in project), project
    assert not any("[test]" in line or "[bench]" in line for line in lines)
    assert any("pip install -q --python .venv/bin/python -e ." in line for line in project), "uv does it when it can"
    assert any("venv -q --seed" in line for line in lines), "uv creates .venv (with pip) when it can be had"


def test_make_test_installs_the_test_extra_and_runs_pytest():
    lines = dry_run("test")

    assert any("'.[test]'" in line for line in installs(lines))
    assert any("-m pytest" in line for line in lines)


def test_port_picks_where_make_run_serves_and_what_it_prints():
    lines = dry_run("run", "PORT=5099")

    assert any("flask --app app run --port 5099" in line for line in lines)
    assert any("http://127.0.0.1:5099/" in line for line in lines)
    default = dry_run("run")
    assert any("--port 5000" in line for line in default) and any("http://127.0.0.1:5000/" in line for line in default)


def test_make_run_says_where_the_mail_goes():
    """Without FLASK_MAIL_SERVER (development), mails are files in instance/outbox/: make run says where."""
    recipe = "\n".join(dry_run("run"))

    assert f"is written to {ROOT}/instance/outbox/" in recipe and '[ -n "$FLASK_MAIL_SERVER" ]' in recipe, recipe


@pytest.mark.parametrize("target", ["run", "test"])
def test_installs_and_the_project_are_compiled_to_bytecode_before_serving(target):
    """With PYTHONDONTWRITEBYTECODE set nothing is cached at import, so every worker would compile
    its modules from source at each start: uv compiles what it installs (pip does by default), and
    the project's editable sources are compiled before the server or the suite starts."""
    lines = dry_run(target)

    uv_lines = [line for line in installs(lines) if "--python .venv/bin/python" in line]
    assert uv_lines and all("--compile-bytecode" in line for line in uv_lines), uv_lines
    compile_at = next(i for i, line in enumerate(lines) if "-m compileall" in line)
    assert all(name in lines[compile_at].split() for name in ("identity", "api", "app.py")), lines[compile_at]
    starts = "flask --app app run" if target == "run" else "-m pytest"
    assert compile_at < next(i for i, line in enumerate(lines) if starts in line)
