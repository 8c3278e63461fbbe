"""``tzr-ingest`` as operators run it: a separate process, real PostgreSQL.

These tests start the CLI in a subprocess, because its worker pool needs
real processes and this test process is monkey-patched by eventlet.
"""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.battlelogs.corpus import write_corpus


pytestmark = pytest.mark.postgres

DATA = Path(__file__).parent / "data"
SUMMARY_KEYS = ["files", "loaded", "duplicates", "quarantined", "failed", "seconds"]
# Runs the CLI and reports the child's peak RSS (KiB) on stderr as it exits.
RUNNER = (
    "import atexit, resource, sys;"
    "atexit.register(lambda: print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr));"
    "from pipelines.battlelogs.cli import main; main()"
)


def tzr_ingest(*args, dsn, data_dir, timeout=300):
    environment = dict(os.environ, TZR_PG_DSN=dsn, TZR_DATA_DIR=str(data_dir))
    return subprocess.run(
        [sys.executable, "-c", RUNNER, *map(str, args)],
        capture_output=True, text=True, env=environment, timeout=timeout,
    )


def peak_rss_mib(result) -> float:
    line = [line for line in result.stderr.splitlines() if line.startswith("MAXRSS")][-1]
    return int(line.split()[1]) / 1024


def test_json_summary_and_exit_status(pg, pg_dsn, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("4100001", "4200002", "4300003"):
        (folder / f"{name}.tzb").write_bytes((DATA / f"{name}.tzb").read_bytes())

    first = tzr_ingest("--json", folder, dsn=pg_dsn, data_dir=tmp_path / "var")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert list(summary) == SUMMARY_KEYS
    assert summary["files"] == 3
    assert summary["loaded"] == 3
    assert summary["quarantined"] == {}
    assert (tmp_path / "var" / "archive" / "main" / "82" / "4100001.tzb.gz").exists()

    second = tzr_ingest(folder, dsn=pg_dsn, data_dir=tmp_path / "var")
    assert second.returncode == 0
    assert "3 duplicate(s)" in second.stdout
    assert "\r" not in second.stderr, "no progress bar without a terminal"


def test_quarantine_gives_exit_status_1(pg, pg_dsn, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "4100001.tzb").write_bytes((DATA / "4100001.tzb").read_bytes())
    (folder / "4100002.tzb").write_bytes(b"")

    result = tzr_ingest("--json", folder, dsn=pg_dsn, data_dir=tmp_path / "var")
    assert result.returncode == 1
    assert json.loads(result.stdout)["quarantined"] == {"empty": 1}
    assert (tmp_path / "var" / "quarantine" / "empty" / "4100002.tzb").exists()


def test_unreachable_database_gives_exit_status_3(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "4100001.tzb").write_bytes((DATA / "4100001.tzb").read_bytes())
    result = tzr_ingest(folder, dsn="postgresql://tzr@127.0.0.1:1/tzr", data_dir=tmp_path / "var")
    assert result.returncode == 3
    assert "error:" in result.stderr
    assert (folder / "4100001.tzb").exists()


def test_usage_errors(pg_dsn, tmp_path):
    assert tzr_ingest(dsn=pg_dsn, data_dir=tmp_path).returncode == 2
    missing = tzr_ingest(tmp_path / "nope", dsn=pg_dsn, data_dir=tmp_path)
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    assert tzr_ingest("--workers", "0", tmp_path, dsn=pg_dsn, data_dir=tmp_path).returncode == 2


def test_show_prints_battle_json(tmp_path):
    result = tzr_ingest("show", DATA / "4200002.tzb", dsn="unused", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert list(shown) == ["battle", "participants", "loot"]
    assert list(shown["battle"]) == ["id", "server", "start", "end", "turns", "type", "x", "y", "flags"]
    assert list(shown["participants"][0]) == [
        "login", "side", "level", "is_monster", "survived", "escaped", "joined_turn",
        "kills_monsters", "kills_players", "damage_dealt", "damage_taken", "healed",
    ]
    assert shown["participants"][1]["login"] == "Браво"


def test_show_rejected_file(tmp_path):
    path = tmp_path / "4100001.tzb"
    path.write_bytes(b"<BLOOK><BATTLE")
    result = tzr_ingest("show", path, dsn="unused", data_dir=tmp_path)
    assert result.returncode == 1
    assert json.loads(result.stdout)["rejected"] == "truncated"


# HOSTILE FILES


def hostile_files(folder: Path) -> dict[str, str]:
    """Write one file per attack; return file name -> expected quarantine reason."""
    sample = (DATA / "4100001.tzb").read_bytes()
    files = {
        "5000001.tzb": (
            b'<?xml version="1.0"?><!DOCTYPE BLOOK [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            + sample.replace(b"North Wind", b"&xxe;").replace(b"4100001", b"5000001"),
            "dtd_forbidden",
        ),
        "5000002.tzb": (
            b'<!DOCTYPE BLOOK [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
            b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
            + sample.replace(b"North Wind", b"&d;").replace(b"4100001", b"5000002"),
            "dtd_forbidden",
        ),
        "5000004.tzb": (b"\x00" * 4096, "empty"),
        "5000005.tzb": (sample.replace(b"4100001", b"5000005").replace(b"Ranger Ola", b"R\x98\x81"), "undecodable"),
        "5000006.tzb": (sample, "battle_id_mismatch"),
        "5000007.tzb": (b"", "empty"),
        "5000008.tzb": (b"\x1f\x8b\x08 a gzip header on no gzip data", "bad_gzip"),
        "5000012.tzb": (b"<BATTLE \x03>", "protocol_tokens"),
        "5000010.tzb": (b"<BLOOK><BATTLE t2='1'><<USER/></BATTLE></BLOOK>", "malformed_xml"),
        "5000011.tzb.gz": (b"this is no gzip member", "bad_gzip"),
        "not-a-battle.tzb": (sample, "bad_file_name"),
    }
    for name, (data, _reason) in files.items():
        (folder / name).write_bytes(data)

    # 50 MB of XML-looking text, and a gzip bomb that inflates to 256 MiB.
    with open(folder / "5000003.tzb", "wb") as stream:
        stream.write(sample[:500])
        chunk = b'<TURN turn="1"><USER login="x"><a sf="1" t="2"/></USER></TURN>\n' * 1000
        while stream.tell() < 50 * 1024 * 1024:
            stream.write(chunk)
    with gzip.open(folder / "5000009.tzb.gz", "wb", compresslevel=1) as stream:
        block = b"\0" * (1024 * 1024)
        for _ in range(256):
            stream.write(block)
    expected = {name: reason for name, (_data, reason) in files.items()}
    expected["5000003.tzb"] = "too_large"
    expected["5000009.tzb.gz"] = "too_large"
    return expected


def test_hostile_files_quarantined(pg, pg_dsn, tmp_path):
    folder = tmp_path / "hostile"
    folder.mkdir()
    expected = hostile_files(folder)

    result = tzr_ingest("--json", "--move", folder, dsn=pg_dsn, data_dir=tmp_path / "var")

    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["loaded"] == 0
    assert summary["failed"] == 0
    counts: dict[str, int] = {}
    for reason in expected.values():
        counts[reason] = counts.get(reason, 0) + 1
    assert summary["quarantined"] == dict(sorted(counts.items()))

    rows = dict(pg.execute("SELECT path, reason FROM ingest_files WHERE outcome = 'quarantined'").fetchall())
    for name, reason in expected.items():
        assert rows[str(folder / name)] == reason, name
        assert (tmp_path / "var" / "quarantine" / reason / name).exists(), name
    assert not list(folder.iterdir()), "move mode empties the input folder"
    assert pg.execute("SELECT count(*) FROM battles").fetchone()[0] == 0
    # The 50 MB file and the 256 MiB bomb are refused without being held in memory.
    assert peak_rss_mib(result) < 400


def test_cp1251_log_loads_with_flag(pg, pg_dsn, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    text = (DATA / "4100001.tzb").read_text(encoding="utf-8").replace("North Wind", "Северный ветер")
    (folder / "4100001.tzb").write_bytes(text.encode("cp1251"))

    result = tzr_ingest("--json", folder, dsn=pg_dsn, data_dir=tmp_path / "var")
    assert result.returncode == 0, result.stderr
    assert pg.execute("SELECT clan FROM participants WHERE login = 'Ranger Ola'").fetchone()[0] == "Северный ветер"
    assert pg.execute("SELECT flags FROM battles").fetchone()[0] == ["cp1251"]
    archived = tmp_path / "var" / "archive" / "main" / "82" / "4100001.tzb.gz"
    assert gzip.decompress(archived.read_bytes()) == text.encode("cp1251"), "the archive keeps the bytes as received"


# A GENERATED CORPUS, END TO END WITH TWO WORKERS


def test_generated_corpus_matches_truth(pg, pg_dsn, tmp_path):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, 300, seed=11, gzip_share=0.3, duplicate_share=0.05, truth=True)
    truths = [json.loads(line) for line in (corpus / "truth.jsonl").read_text().splitlines()]

    result = tzr_ingest("--json", "--workers", "2", "--batch-size", "40", corpus, dsn=pg_dsn, data_dir=tmp_path / "var")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["loaded"] == 300
    assert summary["failed"] == 0

    stored = {}
    for row in pg.execute(
        "SELECT b.battle_id, p.login, p.side, p.level, p.is_monster, p.survived, p.escaped, p.joined_turn,"
        " p.kills_monsters, p.kills_players, p.damage_dealt, p.damage_taken, p.healed"
        " FROM participants p JOIN battles b ON b.id = p.battle ORDER BY b.battle_id, p.pid"
    ):
        stored.setdefault(row[0], []).append(list(row[1:]))
    flags = dict(pg.execute("SELECT battle_id, flags FROM battles").fetchall())
    loot = {}
    for battle_id, login, name, qty in pg.execute(
        "SELECT b.battle_id, p.login, l.name, sum(l.qty) FROM loot l JOIN battles b ON b.id = l.battle"
        " JOIN participants p ON p.battle = l.battle AND p.pid = l.pid WHERE l.on_map IS NOT FALSE"
        " GROUP BY b.battle_id, p.pid, p.login, l.name ORDER BY b.battle_id, p.pid, l.name"
    ):
        loot.setdefault(battle_id, []).append({"login": login, "item": name, "qty": qty})

    for truth in truths:
        battle_id = truth["battle"]["id"]
        expected = [
            [p["login"], p["side"], p["level"], p["is_monster"], p["survived"], p["escaped"], p["joined_turn"],
             p["kills_monsters"], p["kills_players"], p["damage_dealt"], p["damage_taken"], p["healed"]]
            for p in truth["participants"]
        ]
        assert stored[battle_id] == expected, battle_id
        assert sorted(flags[battle_id]) == truth["battle"]["flags"], battle_id
        assert loot.get(battle_id, []) == truth["loot"], battle_id
