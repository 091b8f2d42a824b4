"""The README's first two commands (start the demo, run the tests) exist exactly as written."""

import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHELL_LANGUAGES = {"", "sh", "bash", "shell", "console", "zsh", "shell-session"}
FENCE_RE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def shell_commands(markdown: str) -> list[str]:
    """Every command in the fenced shell blocks, in order (prompts, comments and continuations handled)."""
    commands = []
    for language, body in FENCE_RE.findall(markdown):
        if language.lower() not in SHELL_LANGUAGES:
            continue
        joined = re.sub(r"\\\n\s*", " ", body)
        for line in joined.splitlines():
            line = line.strip()
            if language.lower() in ("console", "shell-session") and not line.startswith("$"):
                continue  # output, not a command
            line = line.removeprefix("$").strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def make_targets(makefile: str) -> dict[str, str]:
    """Target name -> its recipe, from a Makefile."""
    targets: dict[str, str] = {}
    current = None
    for line in makefile.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-/$()]+)\s*:(?!=)", line)
        if match and not line.startswith("\t"):
            current = match.group(1)
            targets.setdefault(current, "")
        elif line.startswith("\t") and current:
            targets[current] += line.strip() + "\n"
        elif line.strip() == "":
            current = None
    return targets


def read_readme() -> str:
    path = ROOT / "README.md"
    assert path.is_file(), "README.md is missing"
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def makefile() -> str:
    return (ROOT / "Makefile").read_text(encoding="utf-8")


def make_goals(command: str) -> list[str]:
    argv = shlex.split(command)
    assert argv and argv[0] == "make", f"expected a make command, got {command!r}"
    return [arg for arg in argv[1:] if not arg.startswith("-") and "=" not in arg]


def test_first_two_commands_are_make_run_and_make_test(makefile):
    commands = shell_commands(read_readme())
    assert len(commands) >= 2, f"fewer than two shell commands in README.md: {commands}"
    run, test = commands[0], commands[1]
    targets = make_targets(makefile)

    assert "run" in make_goals(run)
    assert "test" in make_goals(test)
    for goal in make_goals(run) + make_goals(test):
        assert goal in targets, f"README runs `make {goal}` but the Makefile has no {goal!r} target"


def test_make_run_seeds_the_demo_and_serves(makefile):
    recipe = make_targets(makefile)["run"]

    assert "seed demo/seed.json" in recipe
    assert "flask --app app run" in recipe
    assert (ROOT / "demo" / "seed.json").is_file()


def test_make_test_runs_pytest_with_the_test_extra(makefile):
    targets = make_targets(makefile)

    assert "pytest" in targets["test"]
    assert "[test]" in makefile


def test_first_token_curl_uses_the_demo_service_client(makefile):
    curls = [c for c in shell_commands(read_readme()) if c.startswith("curl") and "/connect/token" in c]
    assert curls, "README.md shows no curl line for /connect/token"
    curl = curls[0]
    service = next(c for c in json.loads((ROOT / "demo" / "seed.json").read_text())["clients"] if c["client_id"] == "service")

    assert "client_credentials" in curl
    assert "service" in curl and service["client_secrets"][0] in curl
    url = next(arg for arg in shlex.split(curl) if "/connect/token" in arg)
    port = re.search(r"^PORT\s*\?=\s*(\d+)", makefile, re.MULTILINE).group(1)
    assert urlsplit(url).port == int(port), f"{url} is not where `make run` serves (port {port})"


def test_every_flask_command_names_the_venvs_flask():
    """`flask` alone may be another Python's (or missing): the README runs the project's venv's."""
    readme = read_readme()
    bare = [line.strip() for line in readme.splitlines()
            if re.search(r"(?<![\w/.-])flask --app", line)]
    assert not bare, "commands without .venv/bin/:\n" + "\n".join(bare)
    assert readme.count(".venv/bin/flask --app app") >= 10
