"""Helpers shared by the benchmarks that run services: ports, vhosts, nameko and latency summaries."""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests


ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
RABBIT_MANAGEMENT = os.environ.get("TZR_BENCH_RABBIT_MANAGEMENT", "http://127.0.0.1:15672")
RABBIT_USER = ("guest", "guest")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def summarize(label: str, latencies: list[float], seconds: float) -> dict:
    """Return the median, 99th percentile and maximum in ms, and the rate, of one phase."""
    return {
        "label": label,
        "count": len(latencies),
        "median_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
        "per_second": len(latencies) / seconds if seconds else 0.0,
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
    raise SystemExit(f"{url} did not return 200 within {seconds} s; is the service running?")


def wait_ready(base: str, services=("registration", "status"), seconds: float = 60) -> None:
    """Wait until the gateway's /ready reports every backend of ``services`` up; a benchmark starts no others."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            checks = requests.get(f"{base}/ready", timeout=5).json().get("checks", {})
            if all(isinstance(checks.get(name), dict) and all(checks[name].values()) for name in services):
                return
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.3)
    raise SystemExit(f"{', '.join(services)} did not report ready at {base}/ready within {seconds} s")


class Vhost:
    """A RabbitMQ virtual host of its own, so a benchmark never serves another process's calls."""

    def __init__(self, prefix: str = "tzr_bench"):
        self.name = f"{prefix}_{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> "Vhost":
        url = f"{RABBIT_MANAGEMENT}/api/vhosts/{self.name}"
        try:
            response = requests.put(url, auth=RABBIT_USER, timeout=10)
            response.raise_for_status()
            requests.put(f"{RABBIT_MANAGEMENT}/api/permissions/{self.name}/{RABBIT_USER[0]}", auth=RABBIT_USER,
                         json={"configure": ".*", "write": ".*", "read": ".*"}, timeout=10).raise_for_status()
        except requests.RequestException as error:
            raise SystemExit(f"cannot create RabbitMQ vhost {self.name} through {RABBIT_MANAGEMENT}: {error}; "
                             "is the management plugin enabled (scripts/setup.sh does it)?") from None
        return self

    @property
    def amqp_uri(self) -> str:
        return f"pyamqp://{RABBIT_USER[0]}:{RABBIT_USER[1]}@127.0.0.1:5672/{self.name}"

    def __exit__(self, *exc_info) -> None:
        try:
            requests.delete(f"{RABBIT_MANAGEMENT}/api/vhosts/{self.name}", auth=RABBIT_USER, timeout=10)
        except requests.RequestException as error:
            print(f"warning: vhost {self.name} was not deleted: {error}", file=sys.stderr)


def start_nameko(config: dict, *modules: str, environment: dict | None = None, output=None) -> subprocess.Popen:
    """Start ``nameko run`` with ``config`` (written as a temporary YAML file) and the service modules.

    ``output``, an open file, takes the services' output; by default it goes to this terminal.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as stream:
        json.dump(config, stream)  # JSON is YAML
        config_path = stream.name
    env = dict(os.environ if environment is None else environment, PYTHONPATH=str(ROOT))
    return subprocess.Popen([VENV_BIN / "nameko", "run", "--config", config_path, *modules], env=env, cwd=ROOT,
                            stdout=output, stderr=subprocess.STDOUT if output is not None else None)


def stop(processes: list[subprocess.Popen]) -> None:
    for process in reversed(processes):
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
