"""A request log that cannot be written (its pipe's reader gone: a log collector that died, a
`| tee` closed, a full disk) costs its lines, as any logging handler's failure does, and
never a response."""

import os
import subprocess

import pytest
import requests

from servers import ROOT, GunicornServer

pytestmark = pytest.mark.server


class GunicornOnAPipe(GunicornServer):
    """gunicorn whose standard output and error are a pipe, its reader closed once it serves."""

    def _spawn(self) -> None:
        reader, writer = os.pipe()
        try:
            self.process = subprocess.Popen(self.command(), cwd=ROOT, env=self.process_env(), stdout=writer,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            os.close(writer)
        self.reader = reader

    def close_the_reader(self) -> None:
        os.close(self.reader)


@pytest.mark.parametrize("flush_seconds", ["0", "1.0"], ids=["each_line_at_once", "batched"])
def test_requests_are_answered_when_the_request_log_cannot_be_written(tmp_path, flush_seconds):
    """The request log's handler writes its lines itself (no LogRecord, headers.py's
    RequestLineHandler.write_line): a write that failed (BrokenPipeError) was raised inside the
    response's start_response, and gunicorn closed every connection without an answer while the
    log was broken. Batched lines too: the stream keeps what it could not write and fails again
    at every flush."""
    server = GunicornOnAPipe("sqlite:///" + str(tmp_path / "broken-log.db"), workers=1, name="broken-log",
                             log_dir=tmp_path, env={"FLASK_LOG_REQUESTS_FLUSH_SECONDS": flush_seconds})
    with server:
        server.close_the_reader()
        statuses = []
        with requests.Session() as http:
            for _ in range(300):
                try:
                    statuses.append(http.get(server.url + "/.well-known/openid-configuration", timeout=10).status_code)
                except requests.ConnectionError as err:
                    statuses.append(type(err.args[0]).__name__ if err.args else "ConnectionError")
        answers = {answer: statuses.count(answer) for answer in statuses}
        assert answers == {200: 300}, f"the answers while the log could not be written: {answers}"
        assert server.process.poll() is None, "the server stopped"
