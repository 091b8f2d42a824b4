"""A Redis server of a test module's own (redis-server on a free loopback port, no persistence),
which the tests stop, pause, fill and start again: the suite's shared Redis is never touched."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest


def _free_port() -> int:
    """A free port under 55000: a cluster node also listens on its port plus 10000 (its bus)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port < 55000:
            return port


class OwnRedis:
    def __init__(self, directory: Path, *, cluster: bool = False, replica_of: "OwnRedis | None" = None):
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen | None = None
        self.cluster = cluster
        self.replica_of = replica_of

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.port}" if self.cluster else f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "OwnRedis":
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log"),
             *(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"] if self.cluster else []),
             *(["--replicaof", "127.0.0.1", str(self.replica_of.port)] if self.replica_of else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.cli("PING") == "PONG":
                    break
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError(f"redis-server did not start on port {self.port}")
        if not self.cluster:
            return self
        self.cli("CLUSTER", "ADDSLOTSRANGE", "0", "16383")  # a cluster of one node, holding every slot
        while time.monotonic() < deadline:
            if "cluster_state:ok" in self.cli("CLUSTER", "INFO"):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def cli(self, *args: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()

    def fill(self) -> None:
        """Full, refusing writes (maxmemory reached with the noeviction policy); reads still answer."""
        self.cli("CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.cli("CONFIG", "SET", "maxmemory", "1")

    def unfill(self) -> None:
        self.cli("CONFIG", "SET", "maxmemory", "0")


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory):
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        pytest.skip("needs redis-server and redis-cli (.ci/run installs Redis)")
    server = OwnRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_store(own_redis):
    """The module's Redis, up, empty and with room, for one test."""
    if own_redis.process is None or own_redis.process.poll() is not None:
        own_redis.start()
    own_redis.unfill()
    own_redis.cli("FLUSHALL")
    yield own_redis
    if own_redis.process is not None and own_redis.process.poll() is None:
        own_redis.unfill()


class OwnSentinel:
    """A Redis Sentinel of its own on a free port, monitoring a master as `mymaster`."""

    def __init__(self, directory: Path, master: OwnRedis):
        self.directory = directory
        self.master = master
        self.port = _free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/mymaster"

    def start(self) -> "OwnSentinel":
        config = self.directory / "sentinel.conf"
        config.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
                          f"sentinel monitor mymaster 127.0.0.1 {self.master.port} 1\n"
                          "sentinel down-after-milliseconds mymaster 60000\n")
        self.process = subprocess.Popen(["redis-server", str(config), "--sentinel"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done = subprocess.run(["redis-cli", "-p", str(self.port), "SENTINEL", "get-master-addr-by-name", "mymaster"],
                                  capture_output=True, text=True, timeout=10)
            if str(self.master.port) in done.stdout:
                return self
            time.sleep(0.05)
        raise RuntimeError(f"redis sentinel did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


class RedisWaits:
    """What redis-py waited on while recorded (redis_waits): the connections it made and the
    replies it read, each with the socket timeout it waited under, and each wait that ran out."""

    def __init__(self) -> None:
        self.connections: list[tuple[str, float | None, float | None]] = []  # address, connect and socket timeouts
        self.reads: list[tuple[str, float | None]] = []  # address, the timeout the reply was waited for under
        self.timed_out: list[str] = []  # each wait that ran out its timeout, in order: "read from host:port"

    @property
    def timeouts(self) -> list[float | None]:
        """Each timeout a connection was made with or a reply waited for under, once each (None: no timeout)."""
        found = [timeout for _, connect, sock in self.connections for timeout in (connect, sock)]
        found += [timeout for _, timeout in self.reads]
        return sorted(set(found), key=lambda timeout: (timeout is None, timeout or 0))


@contextmanager
def redis_waits(monkeypatch):
    """Records, within the block, each connection redis-py makes (Connection._connect, TCP, which
    sentinel- and cluster-managed connections use too) with the socket's connect and read timeouts,
    and each reply it reads (AbstractConnection.read_response, every command's and every check's)
    with the timeout the read waits under, and which of them ran out: each call passed on to
    redis-py's own, against the real server, answering or paused (counted, not timed)."""
    import redis.connection
    from redis.exceptions import TimeoutError as RedisTimeout

    waits = RedisWaits()
    real_connect, real_read = redis.connection.Connection._connect, redis.connection.AbstractConnection.read_response

    def connect(self):
        address = f"{self.host}:{self.port}"
        try:
            sock = real_connect(self)
        except socket.timeout:
            waits.timed_out.append(f"connect to {address}")
            raise
        waits.connections.append((address, self.socket_connect_timeout, sock.gettimeout()))
        return sock

    def read_response(self, *args, timeout=redis.connection.SENTINEL, **kwargs):
        address = f"{self.host}:{self.port}"
        # a read waits the socket's timeout, unless redis-py gives this one its own
        waits.reads.append((address, (self._sock.gettimeout() if self._sock else self.socket_timeout)
                            if timeout is redis.connection.SENTINEL else timeout))
        try:
            return real_read(self, *args, timeout=timeout, **kwargs)
        except RedisTimeout:
            waits.timed_out.append(f"read from {address}")
            raise

    with monkeypatch.context() as patch:
        patch.setattr(redis.connection.Connection, "_connect", connect)
        patch.setattr(redis.connection.AbstractConnection, "read_response", read_response)
        yield waits
