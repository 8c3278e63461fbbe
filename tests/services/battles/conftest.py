"""A generated corpus loaded once per module, and the gateway in front of the battles service.

The corpus has recurring players, clans and a bot, a gap of missing battle
ids and one broken file. Tests compute what each route must answer from the
generator's truth (``truth.jsonl`` and ``population.json``), never from the
database.
"""

import json
import shutil
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from pgtools import migrated_database
from pipelines.battlelogs.corpus import write_corpus
from pipelines.battlelogs.runner import run_ingest
from pipelines.battlelogs.settings import IngestSettings
from services.battles.service import BattlesService
from services.gateway.guard import hash_api_key
from services.gateway.service import GatewayService


API_KEY = "analytics-key-0123456789"
FIRST_ID = 4_000_000
BATTLES = 700
MISSING = (FIRST_ID + 100, FIRST_ID + 101, FIRST_ID + 102, FIRST_ID + 400)
BROKEN_ID = FIRST_ID + BATTLES + 5


@dataclass
class Corpus:
    battles: list[dict]          # truth lines of the loaded battles
    members: list[dict]          # population.json members
    dsn: str
    archive: Path
    missing: tuple = MISSING     # ids left out of the loaded corpus
    broken_id: int = BROKEN_ID   # the id of the quarantined file


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    folder = tmp_path_factory.mktemp("analytics")
    source = folder / "in"
    write_corpus(source, BATTLES, first_id=FIRST_ID, layout="flat", truth=True, duplicate_share=0.02,
                 players=40, bots=1, interval=150)
    truth_file = source / "truth.jsonl"
    population = json.loads((source / "population.json").read_text(encoding="utf-8"))
    battles = []
    with truth_file.open(encoding="utf-8") as lines:
        for line in lines:
            battle = json.loads(line)
            if battle["battle"]["id"] in MISSING:
                (source / f"{battle['battle']['id']}.tzb").unlink()
                continue
            for key in ("start", "end"):
                battle["battle"][key] = _time(battle["battle"][key])
            battles.append(battle)
    shutil.move(truth_file, folder / "truth.jsonl")
    (source / "population.json").unlink()
    (source / f"{BROKEN_ID}.tzb").write_bytes(b"<BATTLE battleid='" + str(BROKEN_ID).encode() + b"' t2='1'>")

    with migrated_database("tzr_analytics") as dsn:
        settings = IngestSettings(dsn=dsn, archive_root=folder / "archive", quarantine_root=folder / "quarantine")
        result = run_ingest([source], settings)
        assert result.summary["loaded"] == len(battles)
        assert sum(result.summary["quarantined"].values()) == 1
        yield Corpus(battles=battles, members=population["members"], dsn=dsn, archive=folder / "archive")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def analytics_config(rabbit_config, corpus):
    return {
        **rabbit_config,
        "WEB_SERVER_ADDRESS": f"127.0.0.1:{_free_port()}",
        "REDIS": {"url": "redis://127.0.0.1:6379/13"},
        "BATTLES": {"dsn": corpus.dsn, "timezone": "Europe/Moscow", "statement_timeout": 10000},
        "GATEWAY": {
            "api_keys": f"site:{hash_api_key(API_KEY)}",
            "ip_limit": "10000/minute",
            "key_limit": "10000/minute",
        },
    }


@pytest.fixture
def api(runner_factory, analytics_config):
    """Call the gateway: ``api(path, **params)`` returns the response."""
    import requests

    runner = runner_factory(analytics_config, GatewayService, BattlesService)
    runner.start()
    base = f"http://{analytics_config['WEB_SERVER_ADDRESS']}"
    session = requests.Session()

    def call(path, key=API_KEY, headers=None, **params):
        all_headers = {"X-API-Key": key} if key else {}
        all_headers.update(headers or {})
        return session.get(base + path, params=params, headers=all_headers, timeout=30)

    yield call
    session.close()
