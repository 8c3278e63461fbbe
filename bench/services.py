"""Benchmark the HTTP gateway: server status (cached and not) and registrations.

Run from the repository root after ``scripts/setup.sh``:

    python bench/services.py [--requests 2000] [--registrations 300] [--concurrency 8]

It starts the game-server simulator and ``nameko run`` with the gateway,
registration and status services. They use a MariaDB database of its own
(``tzr_bench_game_*``), Redis database 14 and a RabbitMQ virtual host of
its own (``tzr_bench_services_*``, made through the management API on
127.0.0.1:15672 as guest). So the benchmark never serves the calls of
``scripts/serve.sh``, which uses the vhost ``/`` and the same service
names. The database and the vhost are removed at the end. It measures
over HTTP on 127.0.0.1:

* ``status cached``: ``GET /api/server/status`` answered from Redis;
* ``status uncached``: the same with the cache entry deleted before each
  request, so every response comes from MariaDB and a probe of the game port;
* ``register``: ``POST /api/register`` of new logins, ``--concurrency``
  at a time, each creating an account on the simulator.

It prints the median and 99th percentile latency in milliseconds and the
requests per second of each, the ratio of uncached to cached medians, and
a one-line verdict against the target: status from the cache under 10 ms
at the median. The output of the services goes to a log file, whose path
is printed when a run fails.
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pymysql
import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ROOT, VENV_BIN, Vhost, free_port, start_nameko, stop, summarize, wait_ready  # noqa: E402


REDIS_URL = os.environ.get("TZR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
MARIADB_ADMIN = {"host": "127.0.0.1", "port": 3306, "user": "root"}
CACHED_MEDIAN_TARGET_MS = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000,
                        help="status requests in each of the two status phases (default 2000)")
    parser.add_argument("--registrations", type=int, default=300, help="registrations (default 300)")
    parser.add_argument("--concurrency", type=int, default=8, help="registrations in flight (default 8)")
    args = parser.parse_args()

    database = f"tzr_bench_game_{uuid.uuid4().hex[:8]}"
    cache = redis.Redis.from_url(REDIS_URL)
    log = tempfile.NamedTemporaryFile("w", prefix="tzr-bench-services-", suffix=".log", delete=False)
    processes = []
    with Vhost("tzr_bench_services") as vhost:
        try:
            results = run(args, vhost.amqp_uri, database, cache, log, processes)
        except (Exception, SystemExit):
            print(f"the run failed; the services' output is in {log.name}", file=sys.stderr)
            raise
        finally:
            stop(processes)
            cache.delete("tzr:status", "tzr:status:fresh")
            connection = pymysql.connect(**MARIADB_ADMIN, autocommit=True)
            with connection.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
            connection.close()
            log.close()
    report(results)


def run(args, amqp_uri: str, database: str, cache: redis.Redis, log, processes: list) -> list[dict]:
    """Start the simulator and the services (appended to ``processes``), then run the phases."""
    dsn = f"mysql://root@127.0.0.1:3306/{database}"
    game_port, web_port = free_port(), free_port()
    api_key = uuid.uuid4().hex
    key_hash = hashlib.sha256(api_key.encode()).hexdigest()
    environment = dict(os.environ, TZR_MODE="test", PYTHONPATH=str(ROOT))
    quiet = {"env": environment, "stdout": log, "stderr": subprocess.STDOUT}
    subprocess.run([VENV_BIN / "tzr-gamedb", "test-schema", "--dsn", dsn], check=True, **quiet)
    subprocess.run([VENV_BIN / "tzr-gamedb", "migrate", "--dsn", dsn], check=True, **quiet)
    processes.append(subprocess.Popen(
        [VENV_BIN / "tzr-gamesim", "--port", str(game_port), "--users-dsn", dsn, "--log-level", "WARNING"],
        **quiet,
    ))
    config = {
        "AMQP_URI": amqp_uri,
        "WEB_SERVER_ADDRESS": f"127.0.0.1:{web_port}",
        "max_workers": 50,
        "GAMEDB": {"dsn": dsn, "pool_size": 20},
        "REDIS": {"url": REDIS_URL, "max_connections": 50},
        "STATUS": {"game_host": "127.0.0.1", "game_port": game_port, "ttl": 30, "refresh_interval": 15},
        "REGISTRATION": {"game_host": "127.0.0.1", "game_port": game_port, "account_limit": 5,
                         "check_group": False},
        "GATEWAY": {"api_keys": f"bench:{key_hash}", "ip_limit": "1000000/minute",
                    "key_limit": "1000000/minute", "account_limit": "1000000/minute"},
        "LOGGING": {"version": 1, "root": {"level": "WARNING"}},
    }
    processes.append(start_nameko(
        config, "services.gateway.service", "services.registration.service", "services.status.service",
        environment=environment, output=log,
    ))
    base = f"http://127.0.0.1:{web_port}"
    wait_ready(base)
    return run_phases(base, cache, api_key, args)


def report(results: list[dict]) -> None:
    cpu = " ".join(os.popen("grep -m1 'model name' /proc/cpuinfo").read().split()[3:])
    print(f"\n{os.cpu_count()} cores ({cpu}); everything on 127.0.0.1")
    print(f"{'phase':<18} {'count':>6} {'median ms':>10} {'p99 ms':>8} {'per second':>11}")
    for result in results:
        print(f"{result['label']:<18} {result['count']:>6} {result['median_ms']:>10.2f} "
              f"{result['p99_ms']:>8.2f} {result['per_second']:>11.1f}")
    cached, uncached = results[0], results[1]
    print(f"uncached / cached median: {uncached['median_ms'] / cached['median_ms']:.1f}x")
    met = cached["median_ms"] < CACHED_MEDIAN_TARGET_MS
    print(f"verdict: target {'met' if met else 'missed'}: status from the cache {cached['median_ms']:.2f} ms"
          f" at the median (target: under {CACHED_MEDIAN_TARGET_MS:g} ms)")


def run_phases(base: str, cache: redis.Redis, api_key: str, args) -> list[dict]:
    session = requests.Session()
    status_url = f"{base}/api/server/status"
    session.get(status_url, timeout=5)

    latencies = []
    started = time.perf_counter()
    for _ in range(args.requests):
        begin = time.perf_counter()
        response = session.get(status_url, timeout=10)
        latencies.append(time.perf_counter() - begin)
        response.raise_for_status()
    cached = summarize("status cached", latencies, time.perf_counter() - started)

    latencies = []
    total = 0.0
    for _ in range(args.requests):
        cache.delete("tzr:status:fresh")
        begin = time.perf_counter()
        response = session.get(status_url, timeout=10)
        latencies.append(time.perf_counter() - begin)
        total += latencies[-1]
        response.raise_for_status()
        if response.json()["stale"]:
            raise SystemExit("an uncached answer came back stale: MariaDB did not answer")
    uncached = summarize("status uncached", latencies, total)

    def register(number: int) -> float:
        body = {"login": f"Bench{number:05d}", "password": "qwerty12", "gender": number % 2,
                "telegram_id": 10_000_000 + number}
        begin = time.perf_counter()
        response = requests.post(f"{base}/api/register", json=body, timeout=60,
                                 headers={"X-API-Key": api_key, "X-Request-Id": f"bench-{number:08d}"})
        elapsed = time.perf_counter() - begin
        if response.status_code != 200:
            raise SystemExit(f"registration {number} failed: {response.status_code} {response.text}")
        return elapsed

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        latencies = list(pool.map(register, range(args.registrations)))
    registered = summarize("register", latencies, time.perf_counter() - started)
    return [cached, uncached, registered]


if __name__ == "__main__":
    main()
