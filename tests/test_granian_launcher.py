"""granian_server.py's defaults: what it sets, and that the operator's environment wins."""

import tomllib

import granian_server
from servers import ROOT


def test_the_defaults_fill_what_the_environment_leaves_unset():
    env = granian_server.environment({})
    assert env["GRANIAN_INTERFACE"] == "wsgi" and env["GRANIAN_FACTORY"] == "true"
    assert env["GRANIAN_BLOCKING_THREADS"] == "1"
    assert env["GRANIAN_RESPAWN_FAILED_WORKERS"] == "true"
    assert env["GRANIAN_HTTP1_HEADER_READ_TIMEOUT"] == "10000"
    assert env["GRANIAN_PORT"] == "8000" and env["GRANIAN_HOST"] == "0.0.0.0"
    assert int(env["GRANIAN_WORKERS"]) >= 3  # 2 x cores + 1


def test_the_operators_variables_win():
    env = granian_server.environment({"WEB_CONCURRENCY": "5", "PORT": "9000", "GRANIAN_BLOCKING_THREADS": "2",
                                      "GRANIAN_HOST": "127.0.0.1"})
    assert (env["GRANIAN_WORKERS"], env["GRANIAN_PORT"]) == ("5", "9000")
    assert (env["GRANIAN_BLOCKING_THREADS"], env["GRANIAN_HOST"]) == ("2", "127.0.0.1")
    assert granian_server.environment({"GRANIAN_WORKERS": "3", "WEB_CONCURRENCY": "7"})["GRANIAN_WORKERS"] == "3"


def test_the_console_script_and_module_are_installed():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["portcullis-serve"] == "granian_server:main"
    assert "granian_server" in project["tool"]["setuptools"]["py-modules"]
    assert any(dep.startswith("granian") for dep in project["project"]["dependencies"])
