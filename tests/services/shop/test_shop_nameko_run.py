"""The shop service and the gateway under `nameko run`, as deployed: scheduled snapshots, routes, keep-alives."""

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from shop_helpers import BOT_MOSCOW, KEY_MOSCOW, offers, wait_for
from services.gateway.guard import hash_api_key


pytestmark = [pytest.mark.integration, pytest.mark.postgres]

REPOSITORY = Path(__file__).resolve().parents[3]
API_KEY = "site-key-" + uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output


def test_scheduled_snapshots_under_nameko_run(shop_config, shop_tables, game, catalog, redis_url, tmp_path):
    address = f"127.0.0.1:{free_port()}"
    config = {
        "AMQP_URI": shop_config["AMQP_URI"],
        "WEB_SERVER_ADDRESS": address,
        "REDIS": {"url": redis_url},
        "GATEWAY": {"api_keys": f"site:{hash_api_key(API_KEY)}", "ip_limit": "1000/minute"},
        "SHOP": {**shop_config["SHOP"], "tick": 0.5, "interval": 3, "keepalive_interval": 1},
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    environment = {**os.environ, "TZR_SHOP_BOTS": f"moscow={BOT_MOSCOW}:{KEY_MOSCOW}", "PYTHONPATH": str(REPOSITORY)}
    environment.pop("TZR_SHOP_BOTS_FILE", None)
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("nameko")), "run", "services.gateway.service", "services.shop.service",
         "--config", str(path)],
        cwd=REPOSITORY, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        def complete() -> int:
            return shop_tables.execute("SELECT count(*) FROM shop_snapshots WHERE status = 'complete'").fetchone()[0]

        # Two scheduled snapshots of moscow, one after the other; the other shops have no bot.
        assert wait_for(lambda: complete() >= 2, timeout=60)
        triggers = shop_tables.execute("SELECT DISTINCT sh.code, s.trigger FROM shop_snapshots s"
                                       " JOIN shop_shops sh ON sh.id = s.shop_id").fetchall()
        assert triggers == [("moscow", "schedule")]
        overlapping = shop_tables.execute(
            "SELECT count(*) FROM shop_snapshots a JOIN shop_snapshots b ON a.id < b.id"
            " AND b.started_at < a.finished_at").fetchone()[0]
        assert overlapping == 0
        # One bot session, kept alive between snapshots.
        assert wait_for(lambda: game.count_commands("N") >= 1, timeout=10)
        assert {command.login for command in game.commands("SH")} == {BOT_MOSCOW}

        response = requests.get(f"http://{address}/api/shop/items", params={"limit": 100},
                                headers={"X-API-Key": API_KEY}, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["total"] == len(offers(catalog))
    finally:
        output = stop(process)
    assert "snapshot" in output
    assert KEY_MOSCOW not in output
