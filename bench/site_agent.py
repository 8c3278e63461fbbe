"""Benchmark the site agent against direct RPC calls and the HTTP gateway, as ratios from one run.

Run from the repository root after ``scripts/setup.sh``:

    python bench/site_agent.py [--jobs 1000] [--registrations 200] [--concurrency 8]

It starts, all on 127.0.0.1 and free ports: the game-server simulator,
``nameko run`` with the gateway, registration and status services, the
reference site (``tzr-site serve``) and the agent (``tzr-agent``). They
use a MariaDB database of their own (``tzr_bench_agent_*``), Redis
database 13 and a RabbitMQ virtual host of their own
(``tzr_bench_agent_*``), so the run never touches ``scripts/serve.sh``'s
data or serves its calls. All three are removed at the end.

For the server status and for registrations of new logins, ``--concurrency``
callers at a time go three ways:

* ``direct``: Nameko RPC from this process (one standalone proxy per
  thread, as the agent calls the services);
* ``gateway``: HTTP to the gateway with an API key;
* ``agent``: a job submitted to the reference site, which signs (and for
  registrations encrypts) it, sends it to the agent over the WebSocket and
  checks the signed result; the latency is the site's whole round trip.

It prints the median and 99th percentile latency and the rate of each, then
the ratios agent/direct and gateway/direct. Every result is checked: a
failed call stops the run.
"""

import argparse
import base64
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pymysql
import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ROOT, VENV_BIN, Vhost, free_port, start_nameko, stop, summarize, wait_ready  # noqa: E402

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402


REDIS_URL = os.environ.get("TZR_BENCH_AGENT_REDIS_URL", "redis://127.0.0.1:6379/13")
MARIADB_ADMIN = {"host": "127.0.0.1", "port": 3306, "user": "root"}
PASSWORD = "qwerty12"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="status calls each way (default 1000)")
    parser.add_argument("--registrations", type=int, default=200, help="registrations each way (default 200)")
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight (default 8)")
    args = parser.parse_args()

    database = f"tzr_bench_agent_{uuid.uuid4().hex[:8]}"
    cache = redis.Redis.from_url(REDIS_URL)
    folder = Path(tempfile.mkdtemp(prefix="tzr-bench-agent-"))
    log = (folder / "output.log").open("w")
    processes = []
    with Vhost("tzr_bench_agent") as vhost:
        try:
            results = run(args, vhost.amqp_uri, database, folder, log, processes)
        except (Exception, SystemExit):
            print(f"the run failed; the processes' output is in {log.name}", file=sys.stderr)
            raise
        finally:
            stop(processes)
            for key in cache.scan_iter("tzr:agent:*"):
                cache.delete(key)
            cache.delete("tzr:status", "tzr:status:fresh")
            connection = pymysql.connect(**MARIADB_ADMIN, autocommit=True)
            with connection.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
            connection.close()
            log.close()
    report(results, args)


def _wait_port(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


def run(args, amqp_uri: str, database: str, folder: Path, log, processes: list) -> dict:
    dsn = f"mysql://root@127.0.0.1:3306/{database}"
    game_port, web_port, site_port, control_port = free_port(), free_port(), free_port(), free_port()
    api_key = uuid.uuid4().hex
    environment = dict(os.environ, TZR_MODE="test", PYTHONPATH=str(ROOT))
    quiet = {"env": environment, "stdout": log, "stderr": subprocess.STDOUT}
    subprocess.run([VENV_BIN / "tzr-gamedb", "test-schema", "--dsn", dsn], check=True, **quiet)
    subprocess.run([VENV_BIN / "tzr-gamedb", "migrate", "--dsn", dsn], check=True, **quiet)
    processes.append(subprocess.Popen(
        [VENV_BIN / "tzr-gamesim", "--port", str(game_port), "--users-dsn", dsn, "--log-level", "WARNING"], **quiet))
    config = {
        "AMQP_URI": amqp_uri,
        "WEB_SERVER_ADDRESS": f"127.0.0.1:{web_port}",
        "max_workers": 50,
        "GAMEDB": {"dsn": dsn, "pool_size": 20},
        "REDIS": {"url": REDIS_URL, "max_connections": 50},
        "STATUS": {"game_host": "127.0.0.1", "game_port": game_port, "ttl": 30, "refresh_interval": 15},
        "REGISTRATION": {"game_host": "127.0.0.1", "game_port": game_port, "account_limit": 5,
                         "check_group": False},
        "GATEWAY": {"api_keys": f"bench:{hashlib.sha256(api_key.encode()).hexdigest()}",
                    "ip_limit": "1000000/minute", "key_limit": "1000000/minute",
                    "account_limit": "1000000/minute"},
        "LOGGING": {"version": 1, "root": {"level": "WARNING"}},
    }
    processes.append(start_nameko(config, "services.gateway.service", "services.registration.service",
                                  "services.status.service", environment=environment, output=log))

    secrets_env = {"TZR_SITE_HMAC_SECRET": secrets.token_hex(32),
                   "TZR_SITE_AES_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
                   "TZR_SITE_JWT_SECRET": secrets.token_hex(32)}
    site_env = dict(environment, **secrets_env, LOG_LEVEL="WARNING")
    processes.append(subprocess.Popen(
        [VENV_BIN / "tzr-site", "serve", "--port", str(site_port), "--control-port", str(control_port)],
        env=site_env, stdout=log, stderr=subprocess.STDOUT))
    _wait_port(control_port)
    token_file = folder / "agent.jwt"
    token_file.write_text(subprocess.run([VENV_BIN / "tzr-site", "token"], env=site_env, check=True,
                                         capture_output=True, text=True).stdout)
    agent_env = dict(environment, TZR_SITE_HMAC_SECRET=secrets_env["TZR_SITE_HMAC_SECRET"],
                     TZR_SITE_AES_KEY=secrets_env["TZR_SITE_AES_KEY"], TZR_AGENT_JWT_FILE=str(token_file),
                     TZR_SITE_URL=f"ws://127.0.0.1:{site_port}/ws/pull", AMQP_URI=amqp_uri, TZR_REDIS_URL=REDIS_URL,
                     TZR_AGENT_CONCURRENCY=str(args.concurrency), LOG_LEVEL="WARNING")
    processes.append(subprocess.Popen([VENV_BIN / "tzr-agent"], env=agent_env, stdout=log,
                                      stderr=subprocess.STDOUT))

    base = f"http://127.0.0.1:{web_port}"
    wait_ready(base)
    control = Control(control_port)
    deadline = time.monotonic() + 60
    while not control.request({"op": "state"})["connected"]:
        if time.monotonic() > deadline:
            raise SystemExit("the agent did not connect to the reference site within 60 s")
        time.sleep(0.2)
    return phases(args, base, api_key, amqp_uri, control)


class Control:
    """A client of the reference site's control port, one connection per thread."""

    def __init__(self, port: int):
        self.port = port
        self.local = threading.local()

    def request(self, request: dict) -> dict:
        stream = getattr(self.local, "stream", None)
        if stream is None:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=120)
            stream = self.local.stream = sock.makefile("rwb")
        stream.write(json.dumps(request, ensure_ascii=False).encode() + b"\n")
        stream.flush()
        return json.loads(stream.readline())


def timed(calls, concurrency: int, label: str) -> dict:
    """Run ``calls`` (functions of no argument) ``concurrency`` at a time; return their summary."""
    def one(call):
        begin = time.perf_counter()
        call()
        return time.perf_counter() - begin

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        latencies = list(pool.map(one, calls))
    return summarize(label, latencies, time.perf_counter() - started)


def phases(args, base: str, api_key: str, amqp_uri: str, control: Control) -> dict:
    proxies = threading.local()

    def rpc():
        if not hasattr(proxies, "cluster"):
            proxies.cluster = ClusterRpcProxy({"AMQP_URI": amqp_uri, "serializer": "json"}, timeout=60).start()
        return proxies.cluster

    sessions = threading.local()

    def http():
        if not hasattr(sessions, "session"):
            sessions.session = requests.Session()
        return sessions.session

    def status_direct():
        rpc().status.get_status()

    def status_gateway():
        http().get(f"{base}/api/server/status", timeout=30).raise_for_status()

    def status_agent():
        answer = control.request({"op": "job", "job_type": "get_server_status", "payload": {}, "wait": 60})
        if not (answer["verified"] and answer["result"]["ok"]):
            raise SystemExit(f"a status job failed: {answer}")

    counter = iter(range(10**9))
    run_tag = uuid.uuid4().hex[:4]

    def new_registration():
        number = next(counter)
        return {"login": f"B{run_tag}{number:07d}", "gender": number % 2, "telegram_id": 20_000_000 + number}

    def register_direct():
        payload = {**new_registration(), "password": PASSWORD}
        rpc().registration.register(payload, str(uuid.uuid4()))

    def register_gateway():
        response = http().post(f"{base}/api/register", json={**new_registration(), "password": PASSWORD},
                               headers={"X-API-Key": api_key, "X-Request-Id": str(uuid.uuid4())}, timeout=60)
        if response.status_code != 200:
            raise SystemExit(f"a gateway registration failed: {response.status_code} {response.text}")

    def register_agent():
        answer = control.request({"op": "job", "job_type": "register", "payload": new_registration(),
                                  "password": PASSWORD, "wait": 60})
        if not (answer["verified"] and answer["result"]["ok"]):
            raise SystemExit(f"a registration job failed: {answer}")

    # Warm every path up (connections, caches) before timing.
    for call in (status_direct, status_gateway, status_agent):
        for _ in range(20):
            call()
    results = {}
    c = args.concurrency
    # Interleaved rounds, so that a noisy moment on the machine hits every way alike.
    for name, calls in (("status", (status_direct, status_gateway, status_agent)),
                        ("register", (register_direct, register_gateway, register_agent))):
        count = args.jobs if name == "status" else args.registrations
        for way, call in zip(("direct", "gateway", "agent"), calls):
            results[(name, way)] = timed([call] * count, c, f"{name} {way}")
    return results


def report(results: dict, args) -> None:
    cpu = " ".join(os.popen("grep -m1 'model name' /proc/cpuinfo").read().split()[3:])
    print(f"\n{os.cpu_count()} cores ({cpu}); everything on 127.0.0.1; {args.concurrency} calls in flight")
    print(f"{'phase':<18} {'count':>6} {'median ms':>10} {'p99 ms':>8} {'per second':>11}")
    for result in results.values():
        print(f"{result['label']:<18} {result['count']:>6} {result['median_ms']:>10.2f} "
              f"{result['p99_ms']:>8.2f} {result['per_second']:>11.1f}")
    print("ratios to direct RPC (latency: higher is slower; rate: lower is slower)")
    for name in ("status", "register"):
        direct = results[(name, "direct")]
        for way in ("gateway", "agent"):
            other = results[(name, way)]
            print(f"  {name:<9} {way:<8} median latency {other['median_ms'] / direct['median_ms']:.2f}x, "
                  f"p99 {other['p99_ms'] / direct['p99_ms']:.2f}x, "
                  f"rate {other['per_second'] / direct['per_second']:.2f}x")


if __name__ == "__main__":
    main()
