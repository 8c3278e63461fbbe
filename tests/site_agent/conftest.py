"""The site agent end to end: real services in this process, the agent and the reference site as processes.

The services run in Nameko containers on a throwaway RabbitMQ vhost, with
the game simulator, a fake Telegram, the session's MariaDB game database,
a Redis database and PostgreSQL. The agent (``python -m site_agent``) and
the reference site (``python -m site_agent.site serve``) are separate
processes on free loopback ports, as in production: asyncio and this
process's eventlet stay apart. Tests drive the site through its control
port and read the agent's log file.
"""

import base64
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.battles.service import BattlesService
from services.registration.service import RegistrationService
from services.status.service import StatusService
from site_agent import crypto
from site_agent.site import issue_token


# The game database, Redis, simulator and fake Telegram fixtures of tests/services.
_spec = importlib.util.spec_from_file_location(
    "tzr_service_fixtures", Path(__file__).resolve().parent.parent / "services" / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
_redis_test_database = _fixtures._redis_test_database
redis_url = _fixtures.redis_url
redis_client = _fixtures.redis_client
telegram = _fixtures.telegram
gamedb_dsn = _fixtures.gamedb_dsn
gamedb = _fixtures.gamedb
simulator = _fixtures.simulator
registration_config = _fixtures.registration_config

TELEGRAM_ID = 555000111
PASSWORD = "qwerty12"
JOB_TTL = 45


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout: float = 20.0, interval: float = 0.05, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Keys:
    def __init__(self):
        self.hmac_secret = secrets.token_hex(32)
        self.aes_b64 = base64.b64encode(secrets.token_bytes(32)).decode()
        self.jwt_secret = secrets.token_hex(32)

    @property
    def hmac_key(self) -> bytes:
        return crypto.hmac_key(self.hmac_secret)

    @property
    def aes_key(self) -> bytes:
        return crypto.aes_key(self.aes_b64)


def _stop_process(process: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 20.0) -> int | None:
    if process.poll() is None:
        process.send_signal(sig)
    deadline = time.monotonic() + timeout
    # Polled, not process.wait(): a blocking wait would stall this process's eventlet hub and the services.
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
        while process.poll() is None:
            time.sleep(0.05)
    return process.returncode


class SiteProcess:
    """The reference site, restartable on the same ports with the same journal."""

    def __init__(self, keys: Keys, folder: Path):
        self.keys = keys
        self.port = free_port()
        self.control_port = free_port()
        self.journal = folder / "site-journal.json"
        self.log = folder / "site.log"
        self.process = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/pull"

    def start(self) -> "SiteProcess":
        env = {**os.environ, "TZR_SITE_HMAC_SECRET": self.keys.hmac_secret, "TZR_SITE_AES_KEY": self.keys.aes_b64,
               "TZR_SITE_JWT_SECRET": self.keys.jwt_secret}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "site_agent.site", "serve", "--port", str(self.port),
                 "--control-port", str(self.control_port), "--journal", str(self.journal), "--ttl", str(JOB_TTL),
                 "--max-frame", str(4 * 1024 * 1024)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        wait_until(self._listening, what="the reference site")
        return self

    def _listening(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the reference site exited: {self.log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", self.control_port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.process is not None:
            _stop_process(self.process, sig)
            self.process = None

    def control(self, request: dict, timeout: float = 90.0) -> dict:
        with socket.create_connection(("127.0.0.1", self.control_port), timeout=timeout) as sock:
            sock.sendall(json.dumps(request, ensure_ascii=False).encode() + b"\n")
            buffer = b""
            while not buffer.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
        return json.loads(buffer)

    def job(self, job_type: str, payload: dict | None = None, wait: float = 60.0, **extra) -> dict:
        return self.control({"op": "job", "job_type": job_type, "payload": payload or {}, "wait": wait, **extra},
                            timeout=wait + 30)

    def send(self, frame, job_id: str | None = None, wait: float = 10.0) -> dict:
        if not isinstance(frame, str):
            frame = json.dumps(frame, ensure_ascii=False)
        return self.control({"op": "send", "frame": frame, "id": job_id, "wait": wait}, timeout=wait + 30)

    def result(self, job_id: str, wait: float = 60.0) -> dict:
        return self.control({"op": "result", "id": job_id, "wait": wait}, timeout=wait + 30)

    def state(self) -> dict:
        return self.control({"op": "state"})

    def connected_count(self) -> int:
        return self.state()["connections"]


class AgentProcess:
    """``python -m site_agent`` with its settings in the environment and its log in a file."""

    def __init__(self, keys: Keys, folder: Path, env: dict):
        self.keys = keys
        self.folder = folder
        self.token_file = folder / "agent.jwt"
        self.log = folder / "agent.log"
        self.env = env
        self.process = None

    def write_token(self, lifetime: float = 3600, secret: str | None = None) -> None:
        token = issue_token(secret or self.keys.jwt_secret, lifetime)
        temporary = self.token_file.with_suffix(".tmp")
        temporary.write_text(token + "\n")
        os.replace(temporary, self.token_file)

    def start(self, **overrides) -> "AgentProcess":
        env = {**os.environ, **self.env, "TZR_AGENT_JWT_FILE": str(self.token_file),
               "TZR_SITE_HMAC_SECRET": self.keys.hmac_secret, "TZR_SITE_AES_KEY": self.keys.aes_b64,
               **{key: str(value) for key, value in overrides.items()}}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "site_agent", "--log-level", "DEBUG"],
                                            env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def stop(self, sig=signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        code = _stop_process(self.process, sig, timeout)
        self.process = None
        return code

    def wait_exit(self, timeout: float = 20.0) -> int:
        """Wait for the agent to exit by itself and return its status."""
        wait_until(lambda: self.process.poll() is not None, timeout, what="the agent to exit")
        code, self.process = self.process.returncode, None
        return code

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_log(self, fragment: str, timeout: float = 20.0) -> None:
        wait_until(lambda: fragment in self.text(), timeout, what=f"{fragment!r} in the agent's log")


@pytest.fixture
def keys():
    return Keys()


@pytest.fixture
def services_config(registration_config, simulator, pg_dsn):
    return {
        **registration_config,
        "STATUS": {"game_host": "127.0.0.1", "game_port": simulator.port, "ttl": 30,
                   "refresh_interval": 3600, "probe_timeout": 0.5, "query_timeout": 2},
        "BATTLES": {"dsn": pg_dsn, "statement_timeout": 5000, "pool_max": 4},
    }


@pytest.fixture
def services(container_factory, services_config, telegram):
    """The registration, status and battles services, running."""
    telegram.add_member(TELEGRAM_ID)
    for cls in (RegistrationService, StatusService, BattlesService):
        container_factory(cls, services_config).start()
    return services_config


@pytest.fixture
def site(keys, tmp_path):
    process = SiteProcess(keys, tmp_path).start()
    yield process
    process.stop()


@pytest.fixture
def agent_env(site, services, redis_url):
    return {
        "TZR_SITE_URL": site.url,
        "AMQP_URI": services["AMQP_URI"],
        "TZR_REDIS_URL": redis_url,
        "TZR_JOB_TTL": JOB_TTL,
        "TZR_AGENT_BACKOFF_MIN": 0.1,
        "TZR_AGENT_BACKOFF_MAX": 0.5,
        "TZR_AGENT_TOKEN_POLL": 0.1,
        "TZR_AGENT_REGISTER_TIMEOUT": 20,
        "TZR_AGENT_QUERY_TIMEOUT": 10,
    }


@pytest.fixture
def agent_process(keys, tmp_path, agent_env):
    """An agent that is not started yet, with a valid token in its file."""
    process = AgentProcess(keys, tmp_path, {key: str(value) for key, value in agent_env.items()})
    process.write_token()
    yield process
    process.stop()


@pytest.fixture
def agent(agent_process, site):
    """A running agent connected to the site."""
    agent_process.start()
    wait_until(lambda: site.state()["connected"], what="the agent to connect")
    return agent_process
