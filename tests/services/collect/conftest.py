"""Fixtures for battle-log collection: a corpus served by the game-server simulator, and service config."""

from pathlib import Path

import pytest

from collect_helpers import BOT_ONE, BOT_TWO, CORPUS_SIZE, FIRST_ID, KEY_ONE, KEY_TWO, MISSING_IDS
from pipelines.battlelogs.corpus import write_corpus
from services.game.simulator import GameServerSimulator


@pytest.fixture
def logs_dir(tmp_path) -> Path:
    """Logs FIRST_ID to FIRST_ID + CORPUS_SIZE - 1, without MISSING_IDS."""
    folder = tmp_path / "game-logs"
    write_corpus(folder, CORPUS_SIZE, seed=11, first_id=FIRST_ID, layout="flat", duplicate_share=0.0)
    (folder / "truth.jsonl").unlink(missing_ok=True)
    for battle_id in MISSING_IDS:
        (folder / f"{battle_id}.tzb").unlink()
    return folder


@pytest.fixture
def game(logs_dir):
    with GameServerSimulator(bots={BOT_ONE: KEY_ONE, BOT_TWO: KEY_TWO}, logs_dir=logs_dir) as simulator:
        yield simulator


@pytest.fixture
def collect_tables(pg):
    """The collection tables, emptied: a job left running by another test would be taken up again.

    They are emptied before the test only, because its containers stop after
    this fixture's teardown would run.
    """
    pg.execute("TRUNCATE collect_battles, collect_jobs RESTART IDENTITY CASCADE")
    return pg


@pytest.fixture
def folders(tmp_path):
    paths = {name: tmp_path / name for name in ("drop", "archive", "quarantine")}
    for path in paths.values():
        path.mkdir()
    return paths


@pytest.fixture
def bots_secret(monkeypatch):
    """Both bot accounts in TZR_COLLECT_BOTS; a test may set another value."""
    monkeypatch.delenv("TZR_COLLECT_BOTS_FILE", raising=False)
    monkeypatch.setenv("TZR_COLLECT_BOTS", f"{BOT_ONE}:{KEY_ONE}\n{BOT_TWO}:{KEY_TWO}")
    return monkeypatch


@pytest.fixture
def collect_config(rabbit_config, pg_dsn, folders, game, collect_tables, bots_secret):
    """The ingest service with collection from the simulator; the ingestion timer is slow unless a test speeds it."""
    return {
        **rabbit_config,
        "INGEST": {
            "dsn": pg_dsn,
            "server": "main",
            "drop_dir": str(folders["drop"]),
            "archive_dir": str(folders["archive"]),
            "quarantine_dir": str(folders["quarantine"]),
            "interval": 3600,
            "workers": 1,
            "min_age": 0,
            "timeout": 120,
        },
        "COLLECT": {
            "game_host": "127.0.0.1",
            "game_port": game.port,
            "connect_timeout": 1,
            "read_timeout": 1,
            "battle_timeout": 1.5,
            "attempts": 3,
            "retry_initial_delay": 0.05,
            "retry_max_delay": 0.2,
            "head_misses": 3,
            "poll_interval": 0.5,
            "supervise_interval": 0.2,
            "floor": 1,
        },
    }


