"""The ingest service against a real RabbitMQ, PostgreSQL and drop folder."""

import logging
import shutil
import time
from pathlib import Path

import eventlet
import psycopg
import pytest
from nameko.standalone.rpc import ServiceRpcProxy

from pipelines.battlelogs.corpus import write_corpus
from pipelines.battlelogs.runner import RUN_LOCK_KEY
from services.ingest.dependencies import RepeatedLog
from services.ingest.exceptions import DatabaseUnavailable, InvalidArgument, RunInProgress
from services.ingest.service import IngestService


pytestmark = [pytest.mark.integration, pytest.mark.postgres]

DATA = Path(__file__).parent.parent / "pipelines" / "data"


@pytest.fixture
def folders(tmp_path):
    paths = {name: tmp_path / name for name in ("drop", "archive", "quarantine")}
    for path in paths.values():
        path.mkdir()
    return paths


@pytest.fixture
def service_config(rabbit_config, pg_dsn, folders):
    return {
        **rabbit_config,
        "INGEST": {
            "dsn": pg_dsn,
            "server": "main",
            "drop_dir": str(folders["drop"]),
            "archive_dir": str(folders["archive"]),
            "quarantine_dir": str(folders["quarantine"]),
            "interval": 0.5,
            "workers": 1,
            "min_age": 0,
            "timeout": 120,
        },
    }


def drop(source: Path, folder: Path) -> None:
    """Drop a log as producers should: write a hidden name, then rename it."""
    hidden = folder / f".{source.name}.tmp"
    shutil.copy(source, hidden)
    hidden.rename(folder / source.name)


def wait_for(condition, timeout=60.0, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        eventlet.sleep(step)
    return False


def battle_count(pg) -> int:
    return pg.execute("SELECT count(*) FROM battles").fetchone()[0]


def test_dropped_file_loaded_and_archived(pg, container_factory, service_config, folders):
    container = container_factory(IngestService, service_config)
    container.start()

    drop(DATA / "4100001.tzb", folders["drop"])

    assert wait_for(lambda: battle_count(pg) == 1), "the timer never loaded the dropped file"
    archived = folders["archive"] / "main" / "82" / "4100001.tzb.gz"
    assert wait_for(archived.exists)
    assert wait_for(lambda: not (folders["drop"] / "4100001.tzb").exists())
    # The run records its end after archiving and refreshing the marts.
    assert wait_for(lambda: pg.execute("SELECT status FROM ingest_runs").fetchone()[0] != "running")
    run = pg.execute("SELECT trigger, status, loaded FROM ingest_runs").fetchone()
    assert run == ("timer", "succeeded", 1)


def test_bad_file_quarantined_by_timer(pg, container_factory, service_config, folders):
    container = container_factory(IngestService, service_config)
    container.start()

    (folders["drop"] / ".4100002.tzb.tmp").write_bytes(b"<BLOOK><BATTLE")
    (folders["drop"] / ".4100002.tzb.tmp").rename(folders["drop"] / "4100002.tzb")

    quarantined = folders["quarantine"] / "truncated" / "4100002.tzb"
    assert wait_for(quarantined.exists), "the truncated file was not set aside"
    assert not (folders["drop"] / "4100002.tzb").exists()
    row = pg.execute("SELECT outcome, reason FROM ingest_files").fetchone()
    assert row == ("quarantined", "truncated")
    assert battle_count(pg) == 0


def test_run_now_and_last_runs(pg, container_factory, service_config, folders):
    service_config["INGEST"]["interval"] = 3600
    container = container_factory(IngestService, service_config)
    container.start()
    for name in ("4100001", "4200002"):
        shutil.copy(DATA / f"{name}.tzb", folders["drop"])

    with ServiceRpcProxy("ingest", service_config, timeout=120) as ingest:
        summary = ingest.run_now()
        assert summary == {
            "files": 2, "loaded": 2, "duplicates": 0, "quarantined": {}, "failed": 0,
            "seconds": summary["seconds"],
        }
        again = ingest.run_now()
        assert again["files"] == 0
        runs = ingest.last_runs(5)

    assert [run["trigger"] for run in runs] == ["rpc", "rpc"]
    assert runs[1]["loaded"] == 2
    assert runs[1]["status"] == "succeeded"
    assert runs[0]["id"] > runs[1]["id"]
    assert runs[1]["started_at"].startswith("20")
    assert battle_count(pg) == 2


@pytest.mark.parametrize("limit", [0, 101, "5", True, 2.5, None])
def test_last_runs_rejects_bad_limit(container_factory, service_config, limit):
    container = container_factory(IngestService, service_config)
    container.start()
    with ServiceRpcProxy("ingest", service_config, timeout=30) as ingest:
        with pytest.raises(InvalidArgument, match="limit must be an integer from 1 to 100"):
            ingest.last_runs(limit)


def test_run_now_while_another_run_holds_the_lock(pg, pg_dsn, container_factory, service_config, folders):
    service_config["INGEST"]["interval"] = 3600
    container = container_factory(IngestService, service_config)
    container.start()
    shutil.copy(DATA / "4100001.tzb", folders["drop"])

    with psycopg.connect(pg_dsn, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (RUN_LOCK_KEY,))
        with ServiceRpcProxy("ingest", service_config, timeout=60) as ingest:
            with pytest.raises(RunInProgress, match="in progress"):
                ingest.run_now()
    assert (folders["drop"] / "4100001.tzb").exists()
    assert battle_count(pg) == 0


def test_long_run_leaves_the_service_responsive(pg, container_factory, service_config, folders):
    """A run parses in a child process, so the service keeps serving other RPCs."""
    service_config["INGEST"]["interval"] = 3600
    write_corpus(folders["drop"], 400, seed=7, layout="flat")
    (folders["drop"] / "truth.jsonl").unlink(missing_ok=True)
    container = container_factory(IngestService, service_config)
    container.start()

    with ServiceRpcProxy("ingest", service_config, timeout=300) as ingest:
        run = eventlet.spawn(ingest.run_now)
        assert wait_for(lambda: pg.execute("SELECT count(*) FROM ingest_runs").fetchone()[0] == 1, timeout=30)
        with ServiceRpcProxy("ingest", service_config, timeout=30) as second:
            runs = second.last_runs(1)
            with pytest.raises(RunInProgress):
                second.run_now()
        # Served while the run was still going on.
        assert runs[0]["status"] == "running"
        summary = run.wait()
    assert summary["loaded"] == 400
    assert battle_count(pg) == 400


def test_last_runs_when_database_is_down(container_factory, service_config):
    service_config["INGEST"]["dsn"] = "postgresql://tzr@127.0.0.1:1/tzr"
    service_config["INGEST"]["pool_timeout"] = 1
    container = container_factory(IngestService, service_config)
    container.start()
    with ServiceRpcProxy("ingest", service_config, timeout=30) as ingest:
        with pytest.raises(DatabaseUnavailable, match="did not answer"):
            ingest.last_runs(1)


def test_repeated_errors_logged_once(caplog):
    repeats = RepeatedLog(logging.getLogger("test.repeats"), every=600)
    with caplog.at_level(logging.ERROR, logger="test.repeats"):
        for _ in range(5):
            repeats.log(logging.ERROR, "failed: %s", "database down")
        repeats.log(logging.ERROR, "failed: %s", "disk full")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["failed: database down", "failed: disk full"]


def test_ready_reports_each_backend(container_factory, service_config, folders):
    container = container_factory(IngestService, service_config)
    container.start()
    with ServiceRpcProxy("ingest", service_config, timeout=30) as ingest:
        assert ingest.ready() == {"postgres": True, "drop_dir": True}
        try:
            folders["drop"].rmdir()
            assert ingest.ready() == {"postgres": True, "drop_dir": False}
        finally:
            folders["drop"].mkdir(exist_ok=True)


def test_ready_when_database_is_down(container_factory, service_config):
    service_config["INGEST"]["dsn"] = "postgresql://tzr@127.0.0.1:1/tzr"
    container = container_factory(IngestService, service_config)
    container.start()
    with ServiceRpcProxy("ingest", service_config, timeout=30) as ingest:
        assert ingest.ready() == {"postgres": False, "drop_dir": True}
