"""The ingest service under `nameko run`, as deployed: scheduled collection and a bad bots secret."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from nameko.standalone.rpc import ServiceRpcProxy

from collect_helpers import BOT_ONE, FIRST_ID, KEY_ONE, statuses, wait_for


pytestmark = [pytest.mark.integration, pytest.mark.postgres]

REPOSITORY = Path(__file__).resolve().parents[3]


def nameko_run(config: dict, tmp_path: Path, bots: str) -> subprocess.Popen:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    environment = {**os.environ, "TZR_COLLECT_BOTS": bots, "PYTHONPATH": str(REPOSITORY)}
    environment.pop("TZR_COLLECT_BOTS_FILE", None)
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("nameko")), "run", "services.ingest.service", "--config", str(path)],
        cwd=REPOSITORY, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output


def slow_request_in_flight(game) -> bool:
    """Return whether the simulator is holding the reply to GETMYBATTLE for FIRST_ID + 5."""
    requests = game.commands("GETMYBATTLE")
    if not requests or requests[-1].finished_at is not None:
        return False
    return game.commands("POST")[-1].attributes["t"] == f"//blook {FIRST_ID + 5}"


def test_scheduled_forward_job_under_nameko_run(collect_config, collect_tables, game, tmp_path):
    config = {key: value for key, value in collect_config.items() if key in ("AMQP_URI", "INGEST", "COLLECT")}
    config["INGEST"] = {**config["INGEST"], "interval": 1}
    config["COLLECT"] = {**config["COLLECT"], "auto_forward": True, "forward_start": FIRST_ID,
                         "schedule_interval": 1, "battle_timeout": 5}
    game.set_fault("slow", commands={"GETMYBATTLE"}, battles={FIRST_ID + 5}, delay=2.0)
    process = nameko_run(config, tmp_path, f"{BOT_ONE}:{KEY_ONE}")
    try:
        assert wait_for(lambda: statuses(collect_tables).get(FIRST_ID + 4) == "fetched", timeout=60)

        # While a bot waits on the slow reply, the service still serves RPC
        # at once: the socket waits are green, not blocking the hub.
        assert wait_for(lambda: slow_request_in_flight(game), timeout=20)
        with ServiceRpcProxy("ingest", config, timeout=10) as ingest:
            started = time.monotonic()
            jobs = ingest.collect_jobs(5)
            elapsed = time.monotonic() - started
        assert elapsed < 1.0
        assert [(job["direction"], job["trigger"], job["status"]) for job in jobs] == [("forward", "schedule", "running")]

        loaded = lambda: collect_tables.execute("SELECT count(*) FROM battles").fetchone()[0]  # noqa: E731
        assert wait_for(lambda: loaded() >= 5, timeout=90)
    finally:
        output = stop(process)
    assert "battle-log collection on for server main" in output
    assert KEY_ONE not in output


def test_malformed_bots_secret_under_nameko_run(collect_config, tmp_path):
    config = {key: value for key, value in collect_config.items() if key in ("AMQP_URI", "INGEST", "COLLECT")}
    secret = "collector:" + KEY_ONE[:30]
    process = nameko_run(config, tmp_path, secret)
    try:
        process.wait(timeout=60)
    finally:
        output = stop(process)

    # nameko 2.14 prints a ConfigurationError as "Error: ..." and exits with status 0.
    assert process.returncode is not None
    assert "Error: secret TZR_COLLECT_BOTS: the key of entry 1 (login 'collector') must be 40 uppercase" in output
    assert KEY_ONE[:30] not in output
