"""Ingest batches of battle-log files: read, parse, frame, load, archive.

:func:`ingest_batch` is the unit of work a worker process runs. Each file of
the batch ends in exactly one outcome:

* ``loaded``: a new battle, committed, then archived as gzip;
* ``replaced``: a changed file for a stored battle, which is deleted and
  written again in the same transaction;
* ``duplicate``: the same bytes as the stored battle; nothing changes;
* ``quarantined``: the file cannot be loaded; the reason is recorded in
  ``ingest_files`` and the file is set aside under the quarantine folder;
* ``failed``: an infrastructure error (database down, disk error); the file is
  left in place for the next run.

Files are moved or copied only after the transaction that records them has
committed, so a crash can leave a file in the input folder (and the next run
then sees a duplicate) but never an archived file whose battle is missing.
"""

import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from logging import getLogger
from pathlib import Path

import psycopg

from pipelines import db
from pipelines.battlelogs import files, load
from pipelines.battlelogs.frames import BattleSource, build_frames
from pipelines.battlelogs.model import Battle
from pipelines.battlelogs.parse import parse_log
from pipelines.battlelogs.read import DEFAULT_MAX_BYTES, RawLog, Rejected, SourceFile, read_log


_log = getLogger(__name__)

DEFAULT_BATCH_SIZE = 100
DEFAULT_ARCHIVE_LEVEL = 6

OUTCOMES = ("loaded", "replaced", "duplicate", "quarantined", "failed")


@dataclass(frozen=True)
class IngestSettings:
    """Where and how to ingest; picklable, so worker processes get a copy."""

    dsn: str
    archive_root: Path
    quarantine_root: Path
    server: str = "main"
    move: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES
    batch_size: int = DEFAULT_BATCH_SIZE
    archive_level: int = DEFAULT_ARCHIVE_LEVEL


@dataclass
class FileOutcome:
    """What became of one input file."""

    path: str
    outcome: str
    battle_id: int | None = None
    sha256: str | None = None
    size: int | None = None
    reason: str | None = None
    detail: str | None = None
    moved_to: str | None = None
    days: list[date] = field(default_factory=list)


@dataclass
class _Parsed:
    source: SourceFile
    raw: RawLog
    battle: Battle
    outcome: FileOutcome


_connection: psycopg.Connection | None = None


def _get_connection(dsn: str) -> psycopg.Connection:
    # One connection per worker process, reused across its batches and
    # replaced when the server dropped it.
    global _connection
    if _connection is None or _connection.closed or _connection.broken:
        _connection = db.connect(dsn)
    return _connection


def close_connection() -> None:
    global _connection
    if _connection is not None:
        _connection.close()
        _connection = None


def ingest_batch(paths: list[str], settings: IngestSettings, run_id: int | None) -> list[FileOutcome]:
    """Ingest one batch of files; return one outcome per path, in order."""
    outcomes: dict[str, FileOutcome] = {}
    parsed: list[_Parsed] = []
    for path in paths:
        item = _read_and_parse(Path(path), settings)
        if isinstance(item, _Parsed):
            parsed.append(item)
            outcomes[path] = item.outcome
        else:
            outcomes[path] = item

    quarantined = [o for o in outcomes.values() if o.outcome == "quarantined"]
    for outcome in quarantined:
        outcome.moved_to = str(files.quarantine_path(
            settings.quarantine_root, outcome.reason, Path(outcome.path), outcome.sha256,
        ))

    try:
        connection = _get_connection(settings.dsn)
        _record_rejections(connection, quarantined, run_id)
        for round_items in _rounds(parsed):
            _load_round(connection, round_items, settings, run_id)
    except psycopg.OperationalError as error:
        _log.error("database unavailable, %d files left for the next run: %s", len(paths), error)
        for outcome in outcomes.values():
            outcome.outcome, outcome.reason, outcome.detail = "failed", "database", str(error)
            outcome.moved_to = None
        return [outcomes[p] for p in paths]

    parsed_by_path = {item.outcome.path: item for item in parsed}
    for outcome in outcomes.values():
        _settle_file(outcome, settings, parsed_by_path)
    return [outcomes[p] for p in paths]


def _read_and_parse(path: Path, settings: IngestSettings) -> _Parsed | FileOutcome:
    source = SourceFile.from_path(path)
    outcome = FileOutcome(path=str(path), outcome="loaded", battle_id=source.name_battle_id)
    raw = None
    try:
        if source.name_battle_id is None:
            raise Rejected(
                "bad_file_name",
                f"expected <battle_id>.tzb or <battle_id>.tzb.gz, got {path.name!r}",
            )
        raw = read_log(source, settings.max_bytes)
        outcome.sha256, outcome.size = raw.sha256, raw.size
        battle = parse_log(raw.data, source.name_battle_id)
        if battle.started_at is None and battle.ended_at is None:
            raise Rejected("missing_time", "the header has neither an end time (t2) nor a start time (note)")
        battle.flags |= raw.flags
        return _Parsed(source, raw, battle, outcome)
    except Rejected as rejection:
        _log.info("quarantining %s: %s", path, rejection)
        outcome.outcome, outcome.reason, outcome.detail = "quarantined", rejection.reason, rejection.detail
        return outcome
    except FileNotFoundError as error:
        outcome.outcome, outcome.reason, outcome.detail = "failed", "vanished", str(error)
        return outcome
    except OSError as error:
        outcome.outcome, outcome.reason, outcome.detail = "failed", "io_error", str(error)
        return outcome


def _rounds(parsed: list[_Parsed]) -> list[list[_Parsed]]:
    # A battle may appear twice in one batch (a .tzb and its .gz, or a copy):
    # each round holds a battle at most once, so the later file is compared
    # against the earlier one as if it came in the next run.
    rounds: list[list[_Parsed]] = []
    seen_in_round: list[set[int]] = []
    for item in parsed:
        battle_id = item.battle.battle_id
        for index, seen in enumerate(seen_in_round):
            if battle_id not in seen:
                seen.add(battle_id)
                rounds[index].append(item)
                break
        else:
            seen_in_round.append({battle_id})
            rounds.append([item])
    return rounds


def _record_rejections(connection, outcomes: list[FileOutcome], run_id) -> None:
    if not outcomes:
        return
    with connection.transaction(), connection.cursor() as cursor:
        _insert_file_rows(cursor, outcomes, run_id, server=None)


def _insert_file_rows(cursor, outcomes: list[FileOutcome], run_id, server) -> None:
    cursor.executemany(
        "INSERT INTO ingest_files"
        " (run, path, server, battle_id, sha256, size, outcome, reason, detail, moved_to)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [
            (run_id, o.path, server, o.battle_id, o.sha256, o.size, o.outcome,
             o.reason, o.detail, o.moved_to)
            for o in outcomes
        ],
    )


def _load_round(connection, items: list[_Parsed], settings: IngestSettings, run_id) -> None:
    try:
        with connection.transaction(), connection.cursor() as cursor:
            _write_round(cursor, items, settings, run_id)
    except (psycopg.DataError, psycopg.IntegrityError, ValueError, OverflowError, TypeError) as error:
        if len(items) == 1:
            _quarantine_unloadable(connection, items[0], error, settings, run_id)
            return
        # One bad battle must not cost the whole batch: load file by file to
        # find it.
        _log.warning("batch of %d battles failed to load (%s); retrying one by one", len(items), error)
        for item in items:
            item.outcome.outcome = "loaded"
            _load_round(connection, [item], settings, run_id)


def _write_round(cursor, items: list[_Parsed], settings: IngestSettings, run_id) -> None:
    server = settings.server
    battle_ids = [item.battle.battle_id for item in items]
    load.lock_battles(cursor, server, battle_ids)
    stored = load.stored_battles(cursor, server, battle_ids)

    fresh: list[_Parsed] = []
    replaced_ids = []
    for item in items:
        outcome = item.outcome
        outcome.days = []
        previous = stored.get(item.battle.battle_id)
        outcome.moved_to = str(files.archive_path(settings.archive_root, item.battle.battle_id))
        if previous is None:
            outcome.outcome = "loaded"
            fresh.append(item)
        elif previous.sha256 == item.raw.sha256:
            outcome.outcome = "duplicate"
        else:
            outcome.outcome = "replaced"
            outcome.days.append(previous.day)
            replaced_ids.append(previous.id)
            fresh.append(item)

    load.delete_battles(cursor, replaced_ids)
    if fresh:
        keys = load.allocate_ids(cursor, len(fresh))
        sources = [
            BattleSource(
                server=server,
                sha256=item.raw.sha256,
                size=item.raw.size,
                source_path=item.outcome.path,
                archive_path=item.outcome.moved_to,
            )
            for item in fresh
        ]
        frames = build_frames([item.battle for item in fresh], sources, keys)
        load.insert_frames(cursor, frames)
        for item, day in zip(fresh, frames.battles["started_at"].fillna(frames.battles["ended_at"])):
            item.outcome.days.append(day.date())
    _insert_file_rows(cursor, [item.outcome for item in items], run_id, server)


def _quarantine_unloadable(connection, item: _Parsed, error: Exception, settings, run_id) -> None:
    outcome = item.outcome
    _log.error("quarantining %s: the database rejected battle %s: %s", outcome.path, item.battle.battle_id, error)
    outcome.outcome, outcome.reason = "quarantined", "unloadable"
    outcome.detail = f"{type(error).__name__}: {error}"[:500]
    outcome.days = []
    outcome.moved_to = str(files.quarantine_path(
        settings.quarantine_root, outcome.reason, Path(outcome.path), outcome.sha256,
    ))
    _record_rejections(connection, [outcome], run_id)


def _settle_file(outcome: FileOutcome, settings: IngestSettings, parsed_by_path) -> None:
    """Archive or set aside one file after its outcome has been committed."""
    source = Path(outcome.path)
    try:
        if outcome.outcome in ("loaded", "replaced", "duplicate"):
            item = parsed_by_path[outcome.path]
            target = Path(outcome.moved_to)
            if outcome.outcome != "duplicate" or not target.exists():
                files.write_archive(
                    target, source, item.raw.original, item.source.compressed, settings.archive_level,
                )
            if settings.move:
                files.remove_source(source, target)
        elif outcome.outcome == "quarantined":
            files.set_aside(source, Path(outcome.moved_to), settings.move)
    except OSError as error:
        # The database already holds the outcome; the file stays where it is
        # and the next run settles it again (as a duplicate when it loaded).
        _log.error("could not archive or set aside %s: %s", source, error)


def summarize(outcomes: list[FileOutcome]) -> dict:
    """Count outcomes into the summary shape that the CLI prints."""
    counts = defaultdict(int)
    reasons: dict[str, int] = defaultdict(int)
    for outcome in outcomes:
        counts[outcome.outcome] += 1
        if outcome.outcome == "quarantined":
            reasons[outcome.reason] += 1
    return {
        "files": len(outcomes),
        "loaded": counts["loaded"] + counts["replaced"],
        "replaced": counts["replaced"],
        "duplicates": counts["duplicate"],
        "quarantined": dict(sorted(reasons.items())),
        "failed": counts["failed"],
    }


def default_data_dir() -> Path:
    return Path(os.environ.get("TZR_DATA_DIR", "var"))
