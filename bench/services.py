"""Benchmark the HTTP gateway: server status (cached and not) and registrations.

Run from the repository root after ``scripts/setup.sh``:

    python bench/services.py [--requests 2000] [--registrations 300] [--concurrency 8]

It starts the game-server simulator and ``nameko run`` with the gateway,
registration and status services against a MariaDB database of its own
(``tzr_bench_game_*``, dropped at the end) and Redis database 14, then
measures over HTTP on 127.0.0.1:

* ``status cached``: ``GET /api/server/status`` answered from Redis;
* ``status uncached``: the same with the cache entry deleted before each
  request, so every answer reads MariaDB and probes the game port;
* ``register``: ``POST /api/register`` of new logins, ``--concurrency``
  at a time, each creating an account on the simulator.

It prints the median and 99th percentile latency in milliseconds and the
requests per second of each, and the ratio of cached to uncached medians.
Target: status from the cache under 10 ms at the median.
"""

import argparse
import json
import os
import socket
import statistics
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


ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
REDIS_URL = os.environ.get("TZR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
MARIADB_ADMIN = {"host": "127.0.0.1", "port": 3306, "user": "root"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def summary(label: str, latencies: list[float], seconds: float) -> dict:
    return {
        "label": label,
        "median_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "per_second": len(latencies) / seconds,
        "count": len(latencies),
    }


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {seconds} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="status requests per phase (default 2000)")
    parser.add_argument("--registrations", type=int, default=300, help="registrations (default 300)")
    parser.add_argument("--concurrency", type=int, default=8, help="registrations in flight (default 8)")
    args = parser.parse_args()

    database = f"tzr_bench_game_{uuid.uuid4().hex[:8]}"
    dsn = f"mysql://root@127.0.0.1:3306/{database}"
    game_port, web_port = free_port(), free_port()
    api_key = uuid.uuid4().hex
    key_hash = __import__("hashlib").sha256(api_key.encode()).hexdigest()
    environment = dict(os.environ, TZR_MODE="test", PYTHONPATH=str(ROOT))
    cache = redis.Redis.from_url(REDIS_URL)
    processes = []
    try:
        subprocess.run([VENV_BIN / "tzr-gamedb", "test-schema", "--dsn", dsn], check=True, env=environment)
        subprocess.run([VENV_BIN / "tzr-gamedb", "migrate", "--dsn", dsn], check=True, env=environment)
        processes.append(subprocess.Popen(
            [VENV_BIN / "tzr-gamesim", "--port", str(game_port), "--users-dsn", dsn, "--log-level", "WARNING"],
            env=environment, stdout=subprocess.DEVNULL,
        ))
        config = {
            "AMQP_URI": "pyamqp://guest:guest@127.0.0.1:5672/",
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
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as stream:
            json.dump(config, stream)  # JSON is YAML
            config_path = stream.name
        processes.append(subprocess.Popen(
            [VENV_BIN / "nameko", "run", "--config", config_path,
             "services.gateway.service", "services.registration.service", "services.status.service"],
            env=environment, cwd=ROOT,
        ))
        base = f"http://127.0.0.1:{web_port}"
        wait_for(f"{base}/ready")
        results = run_phases(base, cache, api_key, args)
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        cache.delete("tzr:status", "tzr:status:fresh")
        connection = pymysql.connect(**MARIADB_ADMIN, autocommit=True)
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
        connection.close()

    cpu = " ".join(os.popen("grep -m1 'model name' /proc/cpuinfo").read().split()[3:])
    print(f"\n{os.cpu_count()} cores ({cpu}); everything on 127.0.0.1")
    print(f"{'phase':<18} {'count':>6} {'median ms':>10} {'p99 ms':>8} {'per second':>11}")
    for result in results:
        print(f"{result['label']:<18} {result['count']:>6} {result['median_ms']:>10.2f} "
              f"{result['p99_ms']:>8.2f} {result['per_second']:>11.1f}")
    cached, uncached = results[0], results[1]
    print(f"uncached / cached median: {uncached['median_ms'] / cached['median_ms']:.1f}x; "
          f"target: cached median under 10 ms")


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
    cached = summary("status cached", latencies, time.perf_counter() - started)

    latencies = []
    total = 0.0
    for _ in range(args.requests // 4):
        cache.delete("tzr:status:fresh")
        begin = time.perf_counter()
        response = session.get(status_url, timeout=10)
        latencies.append(time.perf_counter() - begin)
        total += latencies[-1]
        response.raise_for_status()
        if response.json()["stale"]:
            raise SystemExit("an uncached answer came back stale: MariaDB did not answer")
    uncached = summary("status uncached", latencies, total)

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
    registered = summary("register", latencies, time.perf_counter() - started)
    return [cached, uncached, registered]


if __name__ == "__main__":
    main()
