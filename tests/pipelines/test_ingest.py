"""End-to-end ingestion into a real PostgreSQL database, in this process."""

import gzip
import shutil
from pathlib import Path

import psycopg
import pytest

from pipelines.battlelogs.corpus import write_corpus
from pipelines.battlelogs.settings import IngestSettings
from pipelines.battlelogs.runner import RUN_LOCK_KEY, RunInProgress, run_ingest


pytestmark = pytest.mark.postgres

DATA = Path(__file__).parent / "data"
EXAMPLES = ("4100001", "4200002", "4300003")


@pytest.fixture
def settings(pg_dsn, tmp_path):
    return IngestSettings(
        dsn=pg_dsn,
        archive_root=tmp_path / "archive",
        quarantine_root=tmp_path / "quarantine",
    )


def copy_examples(folder: Path, names=EXAMPLES) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(DATA / f"{name}.tzb", folder)) for name in names]


def count(pg, table: str) -> int:
    return pg.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def table_snapshot(pg) -> dict:
    return {
        table: pg.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
        for table in ("battles", "participants", "events", "kills", "loot", "map_templates")
    }


def test_examples_loaded(pg, settings, tmp_path):
    copy_examples(tmp_path / "in")
    result = run_ingest([tmp_path / "in"], settings)

    assert result.status == "succeeded"
    assert result.summary["files"] == 3
    assert result.summary["loaded"] == 3
    assert result.summary["duplicates"] == 0
    assert result.summary["quarantined"] == {}
    assert result.summary["failed"] == 0
    assert count(pg, "battles") == 3
    assert count(pg, "participants") == 4 + 3 + 2
    assert count(pg, "events") == 17 + 10 + 4
    assert count(pg, "kills") == 2 + 1 + 1
    assert count(pg, "loot") == 2
    assert count(pg, "map_templates") == 2

    row = pg.execute(
        "SELECT server, started_at::text, ended_at::text, day::text, turns, type, x, y, players, monsters,"
        " copies, flags FROM battles WHERE battle_id = 4100001"
    ).fetchone()
    assert row == ("main", "2025-10-09 08:53:30+00", "2025-10-09 08:55:30+00", "2025-10-09", 3, "B", 12, -7, 1, 3, 1, [])
    duplicated = pg.execute("SELECT copies, flags FROM battles WHERE battle_id = 4300003").fetchone()
    assert duplicated == (2, ["duplicated_log"])

    alpha = pg.execute(
        "SELECT clan, rank_points::text, kills_players, damage_dealt FROM participants p"
        " JOIN battles b ON b.id = p.battle WHERE b.battle_id = 4200002 AND login = 'Alpha'"
    ).fetchone()
    assert alpha == ("Iron & Ash", "512.25", 1, 289)
    gamma = pg.execute("SELECT joined_turn, joined_frame, side FROM participants WHERE login = 'Gamma'").fetchone()
    assert gamma == (2, 1, 3)
    heal = pg.execute("SELECT heal, amount, target, actor FROM events WHERE heal IS NOT NULL").fetchone()
    assert heal == (30, None, 0, 0)


def test_files_archived_after_load(pg, settings, tmp_path):
    copy_examples(tmp_path / "in")
    run_ingest([tmp_path / "in"], settings)

    archived = settings.archive_root / "82" / "4100001.tzb.gz"
    assert gzip.decompress(archived.read_bytes()) == (DATA / "4100001.tzb").read_bytes()
    assert (settings.archive_root / "84" / "4200002.tzb.gz").exists()
    assert (tmp_path / "in" / "4100001.tzb").exists(), "copy mode keeps the inputs"
    stored = pg.execute("SELECT archive_path FROM battles WHERE battle_id = 4100001").fetchone()[0]
    assert stored == str(archived)
    assert not list(settings.archive_root.rglob("*.tmp"))


def test_reingest_changes_nothing(pg, settings, tmp_path):
    copy_examples(tmp_path / "in")
    run_ingest([tmp_path / "in"], settings)
    before = table_snapshot(pg)

    result = run_ingest([tmp_path / "in"], settings)
    assert result.summary["loaded"] == 0
    assert result.summary["duplicates"] == 3
    assert result.status == "succeeded"
    assert table_snapshot(pg) == before


def test_gz_twin_is_duplicate(pg, settings, tmp_path):
    folder = tmp_path / "in"
    copy_examples(folder, ["4100001"])
    (folder / "sub").mkdir()
    (folder / "sub" / "4100001.tzb.gz").write_bytes(gzip.compress((DATA / "4100001.tzb").read_bytes()))

    result = run_ingest([folder], settings)
    assert result.summary["loaded"] == 1
    assert result.summary["duplicates"] == 1
    assert count(pg, "battles") == 1


def test_changed_file_replaces_battle(pg, settings, tmp_path):
    copy_examples(tmp_path / "first", ["4100001"])
    run_ingest([tmp_path / "first"], settings)
    old_key = pg.execute("SELECT id FROM battles").fetchone()[0]

    changed = (DATA / "4100001.tzb").read_bytes().replace(b'HP="1:48"', b'HP="1:50"')
    (tmp_path / "second").mkdir()
    (tmp_path / "second" / "4100001.tzb").write_bytes(changed)
    result = run_ingest([tmp_path / "second"], settings)

    assert result.summary["loaded"] == 1
    assert result.summary["replaced"] == 1
    assert count(pg, "battles") == 1
    assert pg.execute("SELECT count(*) FROM participants WHERE battle = %s", (old_key,)).fetchone()[0] == 0
    assert pg.execute("SELECT damage_dealt FROM participants WHERE login = 'Ranger Ola'").fetchone()[0] == 145
    assert count(pg, "events") == 17
    archived = settings.archive_root / "82" / "4100001.tzb.gz"
    assert gzip.decompress(archived.read_bytes()) == changed
    outcomes = pg.execute("SELECT outcome FROM ingest_files ORDER BY id").fetchall()
    assert outcomes == [("loaded",), ("replaced",)]


def test_quarantine_recorded_and_set_aside(pg, settings, tmp_path):
    folder = tmp_path / "in"
    copy_examples(folder, ["4100001"])
    (folder / "4100009.tzb").write_bytes((DATA / "4100001.tzb").read_bytes())
    (folder / "4100010.tzb").write_bytes((DATA / "4100001.tzb").read_bytes()[:900])
    (folder / "4100011.tzb").write_bytes(b"")

    result = run_ingest([folder], settings)

    assert result.status == "completed_with_errors"
    assert result.summary["loaded"] == 1
    assert result.summary["quarantined"] == {"battle_id_mismatch": 1, "empty": 1, "truncated": 1}
    rows = pg.execute(
        "SELECT battle_id, reason, detail, moved_to FROM ingest_files WHERE outcome = 'quarantined' ORDER BY battle_id"
    ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [(4100009, "battle_id_mismatch"), (4100010, "truncated"), (4100011, "empty")]
    assert "the log says 4100001" in rows[0][2]
    for battle_id, reason, _detail, moved_to in rows:
        assert Path(moved_to) == settings.quarantine_root / reason / f"{battle_id}.tzb"
        assert Path(moved_to).exists()
    run = pg.execute("SELECT status, files, loaded, quarantined FROM ingest_runs").fetchone()
    assert run == ("completed_with_errors", 4, 1, {"battle_id_mismatch": 1, "empty": 1, "truncated": 1})


def test_move_mode_empties_the_folder(pg, settings, tmp_path):
    folder = tmp_path / "drop"
    copy_examples(folder)
    (folder / "4100010.tzb").write_bytes(b"<BLOOK>")
    moving = IngestSettings(**{**settings.__dict__, "move": True})

    result = run_ingest([folder], moving)
    assert result.summary["loaded"] == 3
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == []
    assert (settings.quarantine_root / "truncated" / "4100010.tzb").exists()

    copy_examples(folder, ["4100001"])
    result = run_ingest([folder], moving)
    assert result.summary["duplicates"] == 1
    assert not (folder / "4100001.tzb").exists()


def test_same_battle_twice_in_a_batch(pg, settings, tmp_path):
    folder = tmp_path / "in"
    copy_examples(folder, ["4100001"])
    changed = (DATA / "4100001.tzb").read_bytes().replace(b'HP="1:48"', b'HP="1:50"')
    (folder / "z").mkdir()
    (folder / "z" / "4100001.tzb").write_bytes(changed)

    result = run_ingest([folder], settings)
    assert result.summary["files"] == 2
    assert result.summary["replaced"] == 1
    assert count(pg, "battles") == 1
    assert pg.execute("SELECT damage_dealt FROM participants WHERE login = 'Ranger Ola'").fetchone()[0] == 145


def test_servers_keep_separate_battles(pg, settings, tmp_path):
    copy_examples(tmp_path / "in", ["4100001"])
    run_ingest([tmp_path / "in"], settings)
    test_server = IngestSettings(**{**settings.__dict__, "server": "test", "archive_root": tmp_path / "archive-test"})
    result = run_ingest([tmp_path / "in"], test_server)
    assert result.summary["loaded"] == 1
    assert pg.execute("SELECT array_agg(server ORDER BY server) FROM battles").fetchone()[0] == ["main", "test"]


def test_one_run_at_a_time(pg, settings, tmp_path):
    copy_examples(tmp_path / "in")
    with psycopg.connect(settings.dsn, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (RUN_LOCK_KEY,))
        with pytest.raises(RunInProgress, match="another ingestion run is in progress"):
            run_ingest([tmp_path / "in"], settings)
    assert count(pg, "battles") == 0
    assert count(pg, "ingest_runs") == 0


def test_database_down_leaves_files(pg, settings, tmp_path, monkeypatch):
    from pipelines.battlelogs import ingest

    folder = tmp_path / "drop"
    copy_examples(folder)
    moving = IngestSettings(**{**settings.__dict__, "move": True})

    def refuse(dsn):
        raise psycopg.OperationalError("connection refused (simulated)")

    monkeypatch.setattr(ingest, "_get_connection", refuse)
    result = run_ingest([folder], moving)
    assert result.summary["failed"] == 3
    assert result.status == "completed_with_errors"
    assert len(list(folder.glob("*.tzb"))) == 3
    assert count(pg, "battles") == 0
    assert not settings.archive_root.exists()


def test_out_of_range_numbers_stored_as_null(pg, settings, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    text = (DATA / "4100001.tzb").read_bytes()
    text = text.replace(b'side="1" clan', b'side="99999" clan').replace(b'HP="0:35"', b'HP="0:99999999999"')
    (folder / "4100001.tzb").write_bytes(text)

    result = run_ingest([folder], settings)
    assert result.summary["loaded"] == 1
    assert pg.execute("SELECT side FROM participants WHERE login = 'Ranger Ola'").fetchone()[0] is None
    row = pg.execute("SELECT bad_values, flags FROM battles").fetchone()
    assert row == (2, ["bad_values"])


def test_unloadable_battle_quarantined_alone(pg, settings, tmp_path, monkeypatch):
    from pipelines.battlelogs import ingest

    folder = tmp_path / "in"
    copy_examples(folder)
    original = ingest.load.insert_frames

    def reject_one(cursor, frames):
        if 4200002 in set(frames.battles["battle_id"]):
            raise psycopg.errors.NumericValueOutOfRange("value out of range (simulated)")
        original(cursor, frames)

    monkeypatch.setattr(ingest.load, "insert_frames", reject_one)
    result = run_ingest([folder], settings)

    assert result.summary["loaded"] == 2
    assert result.summary["quarantined"] == {"unloadable": 1}
    assert count(pg, "battles") == 2
    row = pg.execute("SELECT battle_id, detail, moved_to FROM ingest_files WHERE reason = 'unloadable'").fetchone()
    assert row[0] == 4200002
    assert "value out of range (simulated)" in row[1]
    assert Path(row[2]).exists()


def test_same_bad_file_quarantined_once(pg, settings, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "4100002.tzb").write_bytes(b"<BLOOK><BATTLE")
    run_ingest([folder], settings)
    run_ingest([folder], settings)
    assert [p.name for p in (settings.quarantine_root / "truncated").iterdir()] == ["4100002.tzb"]

    (folder / "4100002.tzb").write_bytes(b"<BLOOK><BATTLE t2='1'")
    run_ingest([folder], settings)
    names = sorted(p.name for p in (settings.quarantine_root / "truncated").iterdir())
    assert len(names) == 2
    assert names[0] == "4100002.tzb"
    assert names[1].startswith("4100002.tzb.")


def test_archive_failure_reported(pg, settings, tmp_path):
    copy_examples(tmp_path / "in", ["4100001"])
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the archive should go")
    broken = IngestSettings(**{**settings.__dict__, "archive_root": blocked, "move": True})

    result = run_ingest([tmp_path / "in"], broken)
    assert result.summary["failed"] == 1
    assert result.summary["loaded"] == 0
    assert result.status == "completed_with_errors"
    assert (tmp_path / "in" / "4100001.tzb").exists(), "an input that was not archived stays"
    row = pg.execute("SELECT outcome, reason, detail FROM ingest_files").fetchone()
    assert row[:2] == ("failed", "archive_failed")
    assert "not archived" in row[2]
    assert pg.execute("SELECT archive_path FROM battles").fetchone()[0] is None

    result = run_ingest([tmp_path / "in"], IngestSettings(**{**settings.__dict__, "move": True}))
    assert result.summary["duplicates"] == 1
    archived = settings.archive_root / "82" / "4100001.tzb.gz"
    assert archived.exists()
    assert pg.execute("SELECT archive_path FROM battles").fetchone()[0] == str(archived)
    assert not (tmp_path / "in" / "4100001.tzb").exists()


def test_stale_running_run_closed(pg, settings, tmp_path):
    pg.execute("INSERT INTO ingest_runs (trigger, inputs, workers) VALUES ('cli', '{x}', 1)")
    copy_examples(tmp_path / "in", ["4100001"])
    run_ingest([tmp_path / "in"], settings)
    rows = pg.execute("SELECT status, error FROM ingest_runs ORDER BY id").fetchall()
    assert rows[0][0] == "failed"
    assert rows[0][1].startswith("interrupted")
    assert rows[1] == ("succeeded", None)


def test_interrupted_run_records_what_loaded(pg, settings, tmp_path, monkeypatch):
    from pipelines.battlelogs import ingest

    copy_examples(tmp_path / "in")
    small = IngestSettings(**{**settings.__dict__, "batch_size": 1})
    original = ingest.prepare_batch
    calls = []

    def interrupt_third(paths, batch_settings):
        calls.append(paths)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(paths, batch_settings)

    monkeypatch.setattr(ingest, "prepare_batch", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        run_ingest([tmp_path / "in"], small)

    run = pg.execute("SELECT status, files, loaded, error FROM ingest_runs").fetchone()
    assert run[0] == "failed"
    assert run[1] == run[2] == count(pg, "battles") == 2
    assert run[3] == "KeyboardInterrupt"


def test_player_combat_breakdown_adds_up(pg, settings, tmp_path):
    write_corpus(tmp_path / "in", 30, seed=7, layout="flat", duplicate_share=0, kinds=("pve", "pvp", "mixed"))
    assert run_ingest([tmp_path / "in"], settings).status == "succeeded"

    rows = pg.execute(
        "SELECT is_monster, combat, damage_dealt, damage_taken, kills_monsters, kills_players FROM participants"
    ).fetchall()
    players = [row for row in rows if not row[0]]
    assert players and all(row[1] is None for row in rows if row[0])
    for _, combat, dealt, taken, kills_monsters, kills_players in players:
        def total(prefix):
            return sum(value for key, value in combat.items() if key.startswith(prefix))

        assert total("dealt.") == dealt
        assert total("taken.") == taken
        assert combat.get("kills.player", 0) == kills_players
        assert total("kills.") - combat.get("kills.player", 0) == kills_monsters
        assert set(key.split(".")[0] for key in combat) <= {
            "dealt", "taken", "effect_dealt", "effect_taken", "heals_given", "kills",
        }
    keys = set().union(*(row[1] for row in players))
    assert {"dealt.normal", "dealt.critical", "taken.normal", "heals_given"} <= keys
    assert any(key.startswith("effect_dealt.") for key in keys)
    assert any(key.startswith("kills.") and key != "kills.player" for key in keys)

    # A heal given by one player is a heal received by someone.
    given = sum(row[1].get("heals_given", 0) for row in players)
    received = pg.execute("SELECT sum(healed) FROM participants").fetchone()[0]
    assert 0 < given <= received
