"""README.md and docs/*.md: the first two commands, the reference kept whole, and every shown command run.

The convention (also in docs/index.md): a command is a line starting with `$ ` in a ```console
block, continued by lines ending in a backslash; the lines after it are its expected output,
each matched in order against what it printed (`...` stands for anything, runs of spaces count
as one). A block preceded by `<!-- not-run: reason -->` is not run, and is listed here as a
skipped test with that reason. The rest run for real: in order, page by page, with the project's
`.venv/bin/flask`, against a fresh SQLite database seeded with demo/seed.json (what `make run`
starts from) and, when a page talks to http://127.0.0.1:5000, a live `flask run` on a free port.
`$ACCESS_TOKEN` is alice's access token with the scope IdentityServerApi, from the password grant
of a client `docs-test` the test adds to the demo.
"""

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from cryptography.fernet import Fernet

import mail_server

#: the docs' commands run against a SQLite demo of their own: .ci/run's PostgreSQL run leaves this out
pytestmark = pytest.mark.database_independent

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DEMO_URL = "127.0.0.1:5000"
NOT_RUN_RE = re.compile(r"^<!--\s*not-run:\s*(.+?)\s*-->$")
FENCE_RE = re.compile(r"^```([\w-]*)")
SHELL_LANGUAGES = {"", "sh", "bash", "shell", "zsh", "shell-session"}


@dataclass
class Command:
    line: int
    text: str
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    path: Path
    line: int
    language: str
    body: list[str]
    not_run: str | None = None
    commands: list[Command] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{shown_path(self.path)}:{self.line}"


def shown_path(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, each with its not-run reason and its commands."""
    found, lines = [], path.read_text(encoding="utf-8").splitlines()
    i, previous = 0, ""
    while i < len(lines):
        match = FENCE_RE.match(lines[i])
        if not match:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        reason = NOT_RUN_RE.match(previous)
        block = Block(path, start + 1, match.group(1).lower(), body, reason.group(1) if reason else None)
        if block.language == "console":
            block.commands = console_commands(body, start + 2)
        found.append(block)
        i += 1
        previous = ""
    return found


def console_commands(body: list[str], first_line: int) -> list[Command]:
    commands: list[Command] = []
    continued = False
    for number, line in enumerate(body, first_line):
        if continued:
            commands[-1].text += "\n" + line
        elif line.startswith("$ "):
            commands.append(Command(number, line[2:]))
        elif commands and line.strip():
            commands[-1].expected.append(line.strip())
        continued = line.endswith("\\") and bool(commands)
    return commands


ALL_BLOCKS = [block for path in DOCS for block in blocks(path)]
CONSOLE = [block for block in ALL_BLOCKS if block.language == "console"]
NOT_RUN = [block for block in CONSOLE if block.not_run]
RUN_PAGES = sorted({block.path for block in CONSOLE if not block.not_run})


def shell_commands(path: Path) -> list[str]:
    """Every command a page shows, in order, continuations joined."""
    return [re.sub(r"\\\n\s*", " ", c.text) for b in blocks(path) for c in b.commands]


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


def make_goals(command: str) -> list[str]:
    argv = shlex.split(command, comments=True)
    assert "make" in argv, f"expected a make command, got {command!r}"
    return [arg for arg in argv[argv.index("make") + 1:] if not arg.startswith("-") and "=" not in arg]


@pytest.fixture(scope="module")
def makefile() -> str:
    return (ROOT / "Makefile").read_text(encoding="utf-8")


# --- the README's promises --------------------------------------------------------------------


def test_first_two_commands_are_make_run_and_make_test(makefile):
    commands = shell_commands(ROOT / "README.md")
    assert len(commands) >= 2, f"fewer than two shell commands in README.md: {commands}"
    run, test = commands[0], commands[1]
    targets = make_targets(makefile)

    assert make_goals(run) == ["run"]
    assert make_goals(test) == ["test"]
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


def test_the_port_is_documented(makefile):
    assert "PORT=5001 make run" in shell_commands(ROOT / "README.md")
    assert re.search(r"^PORT\s*\?=", makefile, re.MULTILINE), "the Makefile no longer reads PORT"


def test_first_token_curl_uses_the_demo_service_client(makefile):
    curls = [c for c in shell_commands(ROOT / "README.md") if c.startswith("curl") and "/connect/token" in c]
    assert curls, "README.md shows no curl line for /connect/token"
    curl = curls[0]
    service = next(c for c in json.loads((ROOT / "demo" / "seed.json").read_text())["clients"] if c["client_id"] == "service")

    assert "client_credentials" in curl
    assert "service" in curl and service["client_secrets"][0] in curl
    url = next(arg for arg in shlex.split(curl) if "/connect/token" in arg)
    port = re.search(r"^PORT\s*\?=\s*(\d+)", makefile, re.MULTILINE).group(1)
    assert urlsplit(url).port == int(port), f"{url} is not where `make run` serves (port {port})"


def test_readme_stays_short():
    """The first screen and a little more; the reference lives in docs/."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: move reference text to docs/"
    for heading in ("## Demo clients", "## Layout", "## The local API"):
        assert heading in lines, f"README.md lost its {heading!r} section"
    assert "tests/test_layers.py" in "\n".join(lines), "the Layout no longer points to the layer test"


# --- the reference, kept whole ----------------------------------------------------------------

# Every section of the README before the reference moved to docs/, and where it lives now.
MOVED_SECTIONS = {
    "What it does": "index.md",
    "Configuration": "configuration.md",
    "Operating it: the CLI": "cli.md",
    "Protocol endpoints": "endpoints.md",
    "Browser pages": "endpoints.md",
    "The local API": "local-api.md",
    "Passwords, lockout and rate limits": "passwords.md",
    "Signing keys": "signing-keys.md",
    "Security": "security.md",
    "Token lifetimes and revocation": "security.md",
    "Hostile input": "security.md",
    "Deployment": "deployment.md",
    "Session lifetimes": "deployment.md",
    "Purge and retention": "deployment.md",
    "Testing": "testing.md",
    "Performance": "performance.md",
    "Layout": "layout.md",
}


@pytest.mark.parametrize("title, page", MOVED_SECTIONS.items())
def test_every_reference_section_has_a_page(title, page):
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    assert re.search(rf"^#{{1,2}} {re.escape(title)}$", text, re.MULTILINE), f"docs/{page} has no heading {title!r}"


def test_every_page_is_in_the_site_navigation():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    missing = [p.name for p in DOCS[1:] if not re.search(rf":\s*{re.escape(p.name)}\s*$", nav, re.MULTILINE)]
    assert not missing, f"docs pages missing from mkdocs.yml's nav: {missing}"


def test_every_setting_of_the_defaults_is_documented():
    """configuration.md is where an operator looks a setting up: each one in
    identity/config/defaults.py is named in README.md or docs/ (performance.md's measurements aside),
    so none has a default and a meaning only the code knows (the token lifetimes had none)."""
    from identity.config import defaults

    text = "\n".join(p.read_text(encoding="utf-8") for p in DOCS if p.name != "performance.md")
    missing = [name for name in vars(defaults) if name.isupper() and not re.search(rf"(?<![\w])(?:FLASK_)?{name}(?![\w])", text)]
    assert not missing, f"settings of identity/config/defaults.py no page names: {missing}"


# Named in the docs before the modules that issue 19 introduces are merged; the lead empties this at merge.
PENDING_PATHS: set[str] = set()  # paths the docs may name before they exist (none today)
REPO_PATH_RE = re.compile(r"(?<![\w/.-])((?:identity|api|tests|bench|demo|templates|static|docs)/[\w./-]*[\w/]|gunicorn\.conf\.py|app\.py|Makefile|\.ci/run)")


def test_repository_paths_named_in_the_docs_exist():
    """mkdocs checks links between pages; this checks the files of the repository the text names."""
    missing = set()
    for path in DOCS:
        for name in REPO_PATH_RE.findall(path.read_text(encoding="utf-8")):
            if not (ROOT / name).exists() and name not in PENDING_PATHS and not name.startswith("bench/results/"):
                missing.add(f"{path.relative_to(ROOT)}: {name}")
    assert not missing, "paths that are not in the repository:\n" + "\n".join(sorted(missing))


# --- the commands -------------------------------------------------------------------------------


def test_every_flask_command_names_the_venvs_flask():
    """`flask` alone may be another Python's (or missing): the docs run the project's venv's."""
    bare, total = [], 0
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        total += text.count(".venv/bin/flask --app app")
        bare += [f"{path.relative_to(ROOT)}: {line.strip()}" for line in text.splitlines()
                 if re.search(r"(?<![\w/.-])flask --app", line)]
    assert not bare, "commands without .venv/bin/:\n" + "\n".join(bare)
    assert total >= 10


def test_commands_are_console_blocks_with_prompts():
    """One convention, so that the runner below sees every command a reader may copy."""
    shell = [b.where for b in ALL_BLOCKS if b.language in SHELL_LANGUAGES]
    assert not shell, f"shell blocks not in the ```console convention: {shell}"
    empty = [b.where for b in CONSOLE if not b.commands]
    assert not empty, f"console blocks without a `$ ` command: {empty}"
    stray = [b.where for b in ALL_BLOCKS if b.not_run and b.language != "console"]
    assert not stray, f"not-run markers before blocks that are not commands: {stray}"


@pytest.mark.parametrize("block", NOT_RUN, ids=lambda b: b.where)
def test_not_run_blocks_are_listed(block):
    shown = "; ".join(re.sub(r"\s+#.*$", "", c.text) for c in block.commands)
    pytest.skip(f"{block.where} not run ({block.not_run}): {shown}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def curl_stand_in_dir(tmp_path: Path) -> Path:
    """A directory holding `curl`: tests/curl_shim.py run by this Python (for machines without curl)."""
    directory = tmp_path / "bin"
    directory.mkdir(exist_ok=True)
    script = directory / "curl"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT / 'tests')!r})\n"
                      "from curl_shim import main\nsys.exit(main(sys.argv[1:]))\n")
    script.chmod(0o755)
    return directory


class Demo:
    """A fresh demo database for one page, and the server on it once a command needs one.

    The seeded database is made once (`template`) and copied for each page: seeding hashes
    passwords and secrets, and every `flask` command pays the interpreter's start-up.
    """

    def __init__(self, tmp_path: Path, template: "Demo | None" = None, curl_stand_in: bool = False):
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
        if curl_stand_in or shutil.which("curl", path=self.env.get("PATH")) is None:
            self.env["PATH"] = f"{curl_stand_in_dir(tmp_path)}{os.pathsep}{self.env.get('PATH', '')}"
        self.database = tmp_path / "identity.db"
        self.env.update(
            FLASK_ENVIRONMENT="development",
            FLASK_SECRET_KEY=template.env["FLASK_SECRET_KEY"] if template else "docs-test-" + os.urandom(16).hex(),
            FLASK_KEY_ENCRYPTION_KEY=template.env["FLASK_KEY_ENCRYPTION_KEY"] if template else Fernet.generate_key().decode(),
            FLASK_SQLALCHEMY_DATABASE_URI=f"sqlite:///{self.database}",
            FLASK_LOG_REQUESTS="false",
            # the commands that wait out a worker's cache period (`clients disable`, `keys rotate
            # --now`, ...) wait one second, not the defaults' five: what they print is the same
            FLASK_CLIENT_CACHE_SECONDS="1",
            FLASK_SIGNING_KEY_RELOAD_SECONDS="1",
            **mail_server.environment(),  # the notice after a documented password change goes to the test SMTP server
        )
        self.flask = str(ROOT / ".venv" / "bin" / "flask")
        if not Path(self.flask).exists():  # the suite runs from another environment
            self.flask = str(Path(sys.executable).parent / "flask")
        self.log = tmp_path / "server.log"
        self.server: subprocess.Popen | None = None
        self.port: int | None = None
        if template is None:
            self.cli("seed", "demo/seed.json")
            out = self.cli("clients", "add", "docs-test", "--grant-type", "password", "--scope", "IdentityServerApi")
            self.client_secret = re.search(r"Client secret[^:]*:\s*(\S+)", out).group(1)
        else:
            for suffix in ("", "-wal", "-shm"):
                if Path(f"{template.database}{suffix}").exists():
                    shutil.copy2(f"{template.database}{suffix}", f"{self.database}{suffix}")
            self.client_secret = template.client_secret

    def cli(self, *args: str) -> str:
        done = subprocess.run([self.flask, "--app", "app", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"flask {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def serve(self) -> str:
        if self.server is None:
            self.port = free_port()
            with self.log.open("wb") as log:
                self.server = subprocess.Popen(
                    [self.flask, "--app", "app", "run", "--port", str(self.port)],
                    cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while True:
                assert self.server.poll() is None, "the server exited:\n" + self.log.read_text()
                try:
                    if requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                assert time.monotonic() < deadline, "the server did not answer /healthz:\n" + self.log.read_text()
                time.sleep(0.2)
        return f"127.0.0.1:{self.port}"

    def access_token(self) -> str:
        """Alice's token with IdentityServerApi, from the password grant of the client `docs-test`."""
        answer = requests.post(f"http://{self.serve()}/connect/token", auth=("docs-test", self.client_secret), timeout=30, data={
            "grant_type": "password", "username": "alice", "password": "tulip-quartz-harbor-917",
            "scope": "IdentityServerApi"})
        assert answer.status_code == 200, answer.text
        return answer.json()["access_token"]

    def stop(self):
        if self.server is not None:
            self.server.terminate()
            try:
                self.server.wait(10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()


def matches(expected: str, actual: str) -> bool:
    squeeze = lambda s: re.sub(r"\s+", " ", s.strip())  # noqa: E731
    pattern = ".*".join(re.escape(part) for part in squeeze(expected).split("..."))
    return re.fullmatch(pattern, squeeze(actual)) is not None


def check_output(command: Command, printed: str) -> str | None:
    """None when every expected line is printed, in order; else what is missing."""
    lines = printed.splitlines()
    at = 0
    for want in command.expected:
        while at < len(lines) and not matches(want, lines[at]):
            at += 1
        if at == len(lines):
            return want
        at += 1
    return None


MARK = "@@docs-command-{}@@"


def run_block(block: Block, demo: Demo):
    script = ["set -eo pipefail"]
    for i, command in enumerate(block.commands):
        text = command.text
        if DEMO_URL in text:
            text = text.replace(DEMO_URL, demo.serve())
        if "$ACCESS_TOKEN" in text and "ACCESS_TOKEN" not in demo.env:
            demo.env["ACCESS_TOKEN"] = demo.access_token()
        script += [f"printf '\\n%s\\n' '{MARK.format(i)}'", text]
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=ROOT, env=demo.env, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    parts = re.split(r"\n@@docs-command-(\d+)@@\n", "\n" + done.stdout)
    printed = {int(parts[i]): parts[i + 1] for i in range(1, len(parts), 2)}
    last = max(printed, default=0)
    if done.returncode != 0:
        command = block.commands[last]
        pytest.fail(f"{shown_path(block.path)}:{command.line}: `{command.text}` failed "
                    f"(exit code {done.returncode})\nstdout:\n{printed.get(last, '')}\nstderr:\n{done.stderr[-3000:]}")
    for i, command in enumerate(block.commands):
        missing = check_output(command, printed.get(i, ""))
        assert missing is None, (f"{shown_path(block.path)}:{command.line}: `{command.text}` did not print "
                                 f"{missing!r}; it printed:\n{printed.get(i, '')}")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Demo:
    """The demo seed, plus a client `docs-test` allowed the password grant (for `$ACCESS_TOKEN`)."""
    return Demo(tmp_path_factory.mktemp("docs-demo"))


@pytest.mark.server
@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_commands_run(page, tmp_path, seeded):
    """Each page's commands, in order, on a fresh demo; a failing command or a missing output line fails."""
    demo = Demo(tmp_path, seeded)
    try:
        for block in blocks(page):
            if block.language == "console" and not block.not_run:
                run_block(block, demo)
    finally:
        demo.stop()


@pytest.mark.server
def test_the_readme_runs_with_the_curl_stand_in(tmp_path, seeded):
    """Where curl is missing, tests/curl_shim.py stands in: it must do what the README asks of curl."""
    demo = Demo(tmp_path, seeded, curl_stand_in=True)
    try:
        assert shutil.which("curl", path=demo.env["PATH"]) == str(tmp_path / "bin" / "curl")
        for block in blocks(ROOT / "README.md"):
            if block.language == "console" and not block.not_run:
                run_block(block, demo)
    finally:
        demo.stop()


def test_the_runner_fails_on_a_failing_command(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```console\n$ true\n$ false\n$ echo never\n```\n")
    (block,) = blocks(page)
    demo = Demo.__new__(Demo)
    demo.env = dict(os.environ)
    with pytest.raises(pytest.fail.Exception, match="`false` failed"):
        run_block(block, demo)


def test_the_runner_checks_the_shown_output(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```console\n$ printf 'a  b\\nc\\n'\na b\n...c\n$ echo 1\n2\n```\n")
    (block,) = blocks(page)
    demo = Demo.__new__(Demo)
    demo.env = dict(os.environ)
    with pytest.raises(AssertionError, match="did not print '2'"):
        run_block(block, demo)


# --- the site ---------------------------------------------------------------------------------


def test_the_site_builds_strictly(tmp_path):
    """Broken links between pages, missing anchors and pages left out of the nav fail the build."""
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists():
        pytest.skip("mkdocs is not installed: .venv/bin/pip install -e '.[docs]' (CI's docs step does)")
    done = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_several_instances_name_every_period_a_command_waits_out():
    """`clients disable`/`remove`, `users disable`/`set-password`/`remove` and `keys rotate --now`
    sleep their own process's CLIENT_CACHE_SECONDS, BEARER_CACHE_SECONDS or
    SIGNING_KEY_RELOAD_SECONDS, then say every worker has caught up: that holds only if each
    instance, and the host the commands run on, has the same value. deployment.md's list of what
    instances must share left CLIENT_CACHE_SECONDS out (and configuration.md never listed it)."""
    text = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    section = text.split("## Several instances", 1)[1].split("\n## ", 1)[0]
    for name in ("FLASK_CLIENT_CACHE_SECONDS", "FLASK_BEARER_CACHE_SECONDS", "FLASK_SIGNING_KEY_"):
        assert name in section, name
    assert "command" in section and "same" in section
    assert "FLASK_CLIENT_CACHE_SECONDS" in (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")


def test_the_restore_section_names_every_security_change_a_restore_undoes():
    """deployment.md: after a restore, "repeat what was done since for a reason". Its list left out
    changes a restore also undoes and an operator in an incident must repeat: a factor reset
    (`users mfa-reset`: an attacker's passkey signs in again), a replaced client secret (the leaked
    one works again), a client disabled or removed, a user removed, a password set."""
    text = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    section = text.split("## Backups, restores and downgrades", 1)[1].split("\n## ", 1)[0]
    for command in ("users mfa-reset", "users set-password", "users remove", "clients disable", "clients remove",
                    "secret"):
        assert command in section, command
