"""node-oidc-provider in one process, measured in the same run: scenario 2's reference.

Issue 6 asks client_credentials for "at least node-oidc-provider's single-process rate for the
same signing algorithm". Its 4,000/s was measured on another machine and does not name the
algorithm; on ours oidc-provider 9 issues RS256 tokens at about that rate and ES256 tokens at
nearly twice it, so a scaled constant says little. Instead the benchmark installs the pinned
oidc-provider (bench/node/package-lock.json, `npm ci`), serves it in one Node.js process on
loopback with the app's client, secret, scope and access-token algorithm (bench/node/server.mjs),
and drives it with scenario 2's own wrk script and settings. Like any Node server it keeps
connections open between requests (wrk's default); gunicorn's sync workers close each one, for
the bare endpoint and the app alike.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from functools import lru_cache
from pathlib import Path

from .server import ServerError, base_env, free_port, get_status, stop_process_group

NODE_DIR = Path(__file__).resolve().parent / "node"
MIN_NODE_MAJOR = 20


class NodeUnavailable(RuntimeError):
    """Node.js or the pinned oidc-provider cannot be had here; the run goes on without the reference."""


def pinned_version() -> str:
    return json.loads((NODE_DIR / "package.json").read_text())["dependencies"]["oidc-provider"]


def installed_version() -> str | None:
    manifest = NODE_DIR / "node_modules" / "oidc-provider" / "package.json"
    try:
        return json.loads(manifest.read_text()).get("version")
    except (OSError, ValueError):
        return None


@lru_cache(maxsize=None)
def node_version(node: str) -> str:
    """`node --version` of this binary (asked once per process)."""
    return subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()


def node_binary() -> str:
    """The path of `node`, version 20 or later, or NodeUnavailable saying what is missing."""
    node = shutil.which("node")
    if not node:
        raise NodeUnavailable(f"node is not installed (Node.js {MIN_NODE_MAJOR} or later runs the reference)")
    version = node_version(node)
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        raise NodeUnavailable(f"cannot read node's version ({version!r})") from None
    if major < MIN_NODE_MAJOR:
        raise NodeUnavailable(f"node {version} is too old; oidc-provider {pinned_version()} needs {MIN_NODE_MAJOR} or later")
    return node


def ensure_installed(log) -> str:
    """Install the pinned oidc-provider into bench/node/node_modules (npm ci) unless it is there; return node's path."""
    node = node_binary()
    if installed_version() == pinned_version():
        return node
    npm = shutil.which("npm")
    if not npm:
        raise NodeUnavailable("npm is not installed (it installs oidc-provider for the reference)")
    log(f"  $ npm ci in bench/node (oidc-provider {pinned_version()}, from package-lock.json)")
    result = subprocess.run([npm, "ci", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR,
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0 or installed_version() != pinned_version():
        raise NodeUnavailable(f"npm ci failed (exit {result.returncode}): {(result.stderr or result.stdout)[-1500:]}")
    return node


class NodeProvider:
    """bench/node/server.mjs in one Node.js process on 127.0.0.1 (what the benchmark's measuring needs of a server)."""

    def __init__(self, node: str, *, alg: str, client_id: str, client_secret: str, scope: str, log_path: Path):
        self.name = "node-oidc-provider"
        self.node = node
        self.alg = alg
        self.port = free_port()
        self.settings = {"ALG": alg, "CLIENT_ID": client_id, "CLIENT_SECRET": client_secret, "SCOPE": scope}
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> float:
        """Start and wait for the discovery document; return the seconds that took."""
        env = base_env({"NODE_ENV": "production", "PORT": str(self.port), **self.settings})
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            started = time.perf_counter()
            self.process = subprocess.Popen([self.node, str(NODE_DIR / "server.mjs")], cwd=NODE_DIR, env=env,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        while time.perf_counter() < started + timeout:
            if self.process.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            if get_status(self.port, "/.well-known/openid-configuration") == 200:
                return time.perf_counter() - started
            time.sleep(0.02)
        self.stop()
        raise ServerError(f"{self.name} not ready after {timeout}s:\n{self.log()}")

    def log(self, tail: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-tail:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10) -> None:
        process, self.process = self.process, None
        stop_process_group(process, timeout)
