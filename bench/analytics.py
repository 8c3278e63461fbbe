"""Benchmark every analytics route through the gateway on a database of generated battles.

Run from the repository root after ``scripts/setup.sh``:

    python bench/analytics.py [--battles 100000] [--requests 40] [--keep]

It builds a PostgreSQL database ``tzr_bench_analytics_<battles>``, unless
one from an earlier ``--keep`` run exists: a generated corpus with recurring
players, clans and bots (``tzr-corpus --players --bots``), loaded with
``tzr-ingest --workers 2`` with its marts. Then it starts ``nameko run``
with the gateway and the battles service on a RabbitMQ vhost of its own,
and sends each route ``--requests`` requests one after another, each with
parameters drawn from the data (players, clans, battles, locations, periods
of a week). It prints the median, 99th percentile and maximum latency per
route, in milliseconds. Target: every route under 200 ms at the median.
"""

import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ROOT, VENV_BIN, Vhost, free_port, start_nameko, stop, summarize, wait_for  # noqa: E402


ADMIN_DSN = os.environ.get("TZR_BENCH_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_MS = 200.0
# A realistic mix: ~6,600 battles a day as on the real server, a fifth of them by bots.
PLAYERS_PER_BATTLE = 0.03
BOTS = 4
INTERVAL = 16


def database_dsn(name: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + "/" + name


def existing_battles(name: str) -> int | None:
    try:
        with psycopg.connect(database_dsn(name), connect_timeout=5) as connection:
            return connection.execute("SELECT count(*) FROM battles").fetchone()[0]
    except psycopg.Error:
        return None


def archive_dir(name: str) -> Path:
    # The raw-log route reads the archived files, so they live as long as the database.
    return ROOT / "var" / "bench" / name / "archive"


def build(name: str, battles: int, workers: int) -> None:
    """Generate the corpus and load it into a new database ``name``, archiving the logs under var/bench."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = database_dsn(name)
    shutil.rmtree(archive_dir(name).parent, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="tzr_bench_analytics_"))
    try:
        players = max(50, int(battles * PLAYERS_PER_BATTLE))
        started = time.perf_counter()
        subprocess.run(
            [VENV_BIN / "tzr-corpus", str(work / "in"), "--count", str(battles), "--seed", "1",
             "--players", str(players), "--bots", str(BOTS), "--interval", str(INTERVAL)],
            check=True, cwd=ROOT,
        )
        print(f"generated {battles} logs in {time.perf_counter() - started:.0f} s", flush=True)
        for extra in ("truth.jsonl", "population.json"):
            (work / "in" / extra).unlink(missing_ok=True)
        subprocess.run([VENV_BIN / "tzr-ingest", "migrate", "--dsn", dsn], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.perf_counter()
        subprocess.run(
            [VENV_BIN / "tzr-ingest", "--quiet", "ingest", str(work / "in"), "--dsn", dsn, "--workers", str(workers),
             "--move", "--archive", str(archive_dir(name)), "--quarantine", str(work / "quarantine"), "--json"],
            check=True, cwd=ROOT,
        )
        print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def samples(dsn: str, rng: random.Random) -> dict:
    """Draw the values that requests use from the data itself."""
    with psycopg.connect(dsn) as connection:
        def column(query: str) -> list:
            return [row[0] for row in connection.execute(query)]

        logins = column("SELECT login FROM participants WHERE NOT is_monster GROUP BY login")
        clans = column("SELECT clan FROM participants WHERE clan IS NOT NULL GROUP BY clan")
        battle_ids = column("SELECT battle_id FROM battles TABLESAMPLE SYSTEM (5) LIMIT 2000")
        places = connection.execute("SELECT x, y FROM battles WHERE x IS NOT NULL GROUP BY x, y").fetchall()
        kinds = column("SELECT code FROM monster_kinds WHERE code <> 'unknown'")
        first, last = connection.execute("SELECT min(started_at), max(started_at) FROM battles").fetchone()
    return {"logins": logins, "clans": clans, "battle_ids": battle_ids, "places": places, "kinds": kinds,
            "first": first, "last": last, "rng": rng}


def week(data: dict) -> dict:
    span = (data["last"] - data["first"]).total_seconds()
    since = data["first"] + timedelta(seconds=data["rng"].uniform(0, max(0.0, span - 7 * 86400)))
    return {"since": since.isoformat(), "until": (since + timedelta(days=7)).isoformat()}


def routes(data: dict) -> list[tuple[str, callable]]:
    """Each route with a function that draws one request's path and parameters."""
    rng = data["rng"]
    login = lambda: rng.choice(data["logins"])  # noqa: E731
    clan = lambda: rng.choice(data["clans"])  # noqa: E731
    battle = lambda: rng.choice(data["battle_ids"])  # noqa: E731

    def search():
        choice = rng.randrange(5)
        if choice == 0:
            return "/api/battles", {"player": login()}
        if choice == 1:
            return "/api/battles", {"clan": clan()}
        if choice == 2:
            return "/api/battles", {"monster": rng.choice(data["kinds"]), **week(data)}
        if choice == 3:
            x, y = rng.choice(data["places"])
            return "/api/battles", {"x": x, "y": y}
        return "/api/battles", {"pvp": "true", "page": rng.randint(1, 20)}

    return [
        ("battles search", search),
        ("battle", lambda: (f"/api/battles/{battle()}", {})),
        ("battle raw", lambda: (f"/api/battles/{battle()}/raw", {})),
        ("player profile", lambda: (f"/api/players/{login()}", {})),
        ("players top", lambda: ("/api/players/top", {"metric": rng.choice(
            ["battles", "kills", "survival_rate", "damage_dealt", "loot"]), **week(data)})),
        ("player allies", lambda: (f"/api/players/{login()}/allies", {})),
        ("player rivals", lambda: (f"/api/players/{login()}/rivals", {})),
        ("clan profile", lambda: (f"/api/clans/{clan()}", {})),
        ("clan wars", lambda: ("/api/clans/wars", rng.choice([{}, week(data), {"clan": clan()}]))),
        ("activity heatmap", lambda: ("/api/activity/heatmap", rng.choice([{}, {"tz": "UTC"}, week(data)]))),
        ("locations", lambda: ("/api/locations", rng.choice([{}, week(data)]))),
        ("pvp hotspots", lambda: ("/api/locations/pvp-hotspots", rng.choice([{}, week(data)]))),
        ("resources", lambda: ("/api/economy/resources", rng.choice([{}, {"group": "total"}, week(data)]))),
        ("monsters", lambda: ("/api/economy/monsters", rng.choice([{}, week(data)]))),
        ("bot candidates", lambda: ("/api/integrity/bots", rng.choice([{}, week(data)]))),
        ("data quality", lambda: ("/api/integrity/quality", {})),
    ]


def measure(base: str, api_key: str, data: dict, count: int) -> list[dict]:
    session = requests.Session()
    session.headers["X-API-Key"] = api_key
    results = []
    for label, draw in routes(data):
        latencies = []
        started = time.perf_counter()
        for _ in range(count):
            path, params = draw()
            began = time.perf_counter()
            response = session.get(base + path, params=params, timeout=60)
            latencies.append(time.perf_counter() - began)
            if response.status_code != 200:
                raise SystemExit(f"{label}: {path} {params} returned {response.status_code}: {response.text[:300]}")
        results.append(summarize(label, latencies, time.perf_counter() - started))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--battles", type=int, default=100_000, help="battles in the database (default 100000)")
    parser.add_argument("--requests", type=int, default=40, help="requests per route (default 40)")
    parser.add_argument("--workers", type=int, default=2, help="tzr-ingest workers for the build (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the database for the next run")
    parser.add_argument("--rebuild", action="store_true", help="build the database even if it exists")
    args = parser.parse_args()
    if args.battles < 100 or args.requests < 1:
        parser.error("--battles must be at least 100 and --requests at least 1")

    name = f"tzr_bench_analytics_{args.battles}"
    if args.rebuild or existing_battles(name) is None or not archive_dir(name).is_dir():
        build(name, args.battles, args.workers)
    battles = existing_battles(name)
    print(f"database {name}: {battles} battles", flush=True)
    dsn = database_dsn(name)
    api_key = uuid.uuid4().hex
    web_port = free_port()
    processes = []
    try:
        with Vhost() as vhost:
            config = {
                "AMQP_URI": vhost.amqp_uri,
                "WEB_SERVER_ADDRESS": f"127.0.0.1:{web_port}",
                "max_workers": 10,
                "REDIS": {"url": "redis://127.0.0.1:6379/14"},
                "BATTLES": {"dsn": dsn, "statement_timeout": 30000, "pool_max": 4},
                "GATEWAY": {"api_keys": f"bench:{hashlib.sha256(api_key.encode()).hexdigest()}",
                            "ip_limit": "1000000/minute", "key_limit": "1000000/minute"},
                "LOGGING": {"version": 1, "root": {"level": "WARNING"}},
            }
            processes.append(start_nameko(config, "services.gateway.service", "services.battles.service"))
            base = f"http://127.0.0.1:{web_port}"
            wait_for(f"{base}/health")
            time.sleep(1)
            results = measure(base, api_key, samples(dsn, random.Random(7)), args.requests)
            stop(processes)
            processes = []
    finally:
        stop(processes)
        if not args.keep:
            with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            shutil.rmtree(archive_dir(name).parent, ignore_errors=True)

    cpu = " ".join(os.popen("grep -m1 'model name' /proc/cpuinfo").read().split()[3:])
    print(f"\n{battles} battles; {os.cpu_count()} cores ({cpu}); everything on 127.0.0.1")
    print(f"{'route':<18} {'count':>6} {'median ms':>10} {'p99 ms':>8} {'max ms':>8} {'× target':>9}")
    for result in results:
        print(f"{result['label']:<18} {result['count']:>6} {result['median_ms']:>10.1f} {result['p99_ms']:>8.1f} "
              f"{result['max_ms']:>8.1f} {result['median_ms'] / TARGET_MS:>9.2f}")
    slow = [result["label"] for result in results if result["median_ms"] >= TARGET_MS]
    verdict = "every route meets" if not slow else f"{', '.join(slow)} miss"
    print(f"target: median under {TARGET_MS:.0f} ms per route; {verdict} it")


if __name__ == "__main__":
    main()
