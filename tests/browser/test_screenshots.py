"""The failure screenshot hook itself: a failing browser test names a screenshot that exists."""

import subprocess
import sys
from pathlib import Path

import pytest

# what a page does in Chromium, which no database changes: .ci/run checks it on SQLite only
pytestmark = [pytest.mark.browser, pytest.mark.database_independent]

HERE = Path(__file__).resolve().parent

FAILING_TEST = '''
def test_fails_on_purpose(page):
    page.set_content("<!doctype html><title>x</title><h1>Deliberately failing</h1>")
    assert page.inner_text("h1") == "something else"
'''


def test_a_failing_browser_test_saves_and_names_a_screenshot(browser, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "conftest.py").write_text((HERE / "conftest.py").read_text())
    (project / "test_deliberate.py").write_text(FAILING_TEST)
    basetemp = tmp_path / "basetemp"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--basetemp={basetemp}", "test_deliberate.py"],
        cwd=project, capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Screenshot of the browser at the failure" in output, output
    shots = list(basetemp.rglob("failure-call-page*.png"))
    assert len(shots) == 1, output
    assert str(shots[0]) in output, "the failure message names the screenshot file"
    assert shots[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Deliberately failing" in shots[0].with_suffix(".html").read_text()
