"""Ingest batches of battle-log files: read, parse, frame, load, archive.

A batch goes through three stages. :func:`prepare_batch` needs no database:
it reads and parses the files and builds their frames. :func:`load_batch`
loads them in one transaction per round and records every outcome, and
:func:`settle_batch` then archives the files or sets them aside. A single
process overlaps the stages (parsing the next batch while the database
loads this one and the previous one is compressed into the archive);
:func:`ingest_batch` runs them in turn for worker processes.

Each file of the batch ends in exactly one outcome:

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
then finds a duplicate) but never an archived file whose battle is missing.
"""

from dataclasses import dataclass
from logging import getLogger
from pathlib import Path

import numpy as np
import psycopg

from pipelines import db
from pipelines.battlelogs import files, load
from pipelines.battlelogs.frames import BattleSource, Frames, build_frames
from pipelines.battlelogs.model import Battle
from pipelines.battlelogs.parse import load_log
from pipelines.battlelogs.read import RawLog, Rejected, SourceFile
from pipelines.battlelogs.settings import FileOutcome, IngestSettings


_log = getLogger(__name__)

# Errors that mean one battle's data cannot be stored, as opposed to the
# database being unreachable: the batch is then retried file by file.
_DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError, ValueError, OverflowError, TypeError)


@dataclass
class _Parsed:
    source: SourceFile
    raw: RawLog
    battle: Battle
    outcome: FileOutcome
    battle_source: BattleSource


@dataclass
class _Round:
    """Parsed files that name each battle at most once, with their frames."""

    items: list[_Parsed]
    frames: Frames | None


@dataclass
class PreparedBatch:
    """A batch after reading and parsing, ready to load."""

    paths: list[str]
    outcomes: dict[str, FileOutcome]
    parsed: list[_Parsed]
    rounds: list[_Round]


_connection: psycopg.Connection | None = None


def _get_connection(dsn: str) -> psycopg.Connection:
    # One connection per process, reused across batches and replaced when
    # the server dropped it.
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
    return commit_batch(prepare_batch(paths, settings), settings, run_id)


def prepare_batch(paths: list[str], settings: IngestSettings) -> PreparedBatch:
    """Read and parse a batch and build its frames; no database is needed."""
    outcomes: dict[str, FileOutcome] = {}
    parsed: list[_Parsed] = []
    for path in paths:
        item = _read_and_parse(Path(path).absolute(), settings)
        if isinstance(item, _Parsed):
            parsed.append(item)
            outcomes[path] = item.outcome
            continue
        outcomes[path] = item
        if item.outcome == "quarantined":
            item.moved_to = str(files.quarantine_path(settings.quarantine_root, item.reason, Path(item.path)))

    rounds = []
    for items in _rounds(parsed):
        try:
            frames = _frames_of(items)
        except _DATA_ERRORS as error:
            # Shaping failed on some battle; loading file by file finds it.
            _log.warning("could not shape a round of %d battles (%s); loading one by one", len(items), error)
            frames = None
        rounds.append(_Round(items, frames))
    return PreparedBatch(paths=list(paths), outcomes=outcomes, parsed=parsed, rounds=rounds)


def commit_batch(batch: PreparedBatch, settings: IngestSettings, run_id: int | None) -> list[FileOutcome]:
    """Load a prepared batch, record every outcome, then archive its files."""
    outcomes = load_batch(batch, settings, run_id)
    settle_batch(batch, settings, run_id)
    return outcomes


def load_batch(batch: PreparedBatch, settings: IngestSettings, run_id: int | None) -> list[FileOutcome]:
    """Load a prepared batch and record every file's outcome in the database.

    The files stay where they are until :func:`settle_batch` runs.
    """
    outcomes = batch.outcomes
    quarantined = [o for o in outcomes.values() if o.outcome == "quarantined"]
    try:
        connection = _get_connection(settings.dsn)
        _record_rejections(connection, quarantined, run_id)
        for round_ in batch.rounds:
            _load_round(connection, round_, settings, run_id)
    except psycopg.OperationalError as error:
        _log.error("database unavailable, %d files left for the next run: %s", len(batch.paths), error)
        for outcome in outcomes.values():
            outcome.outcome, outcome.reason, outcome.detail = "failed", "database", str(error)
            outcome.moved_to = None
            outcome.days = []
    return [outcomes[p] for p in batch.paths]


def settle_batch(batch: PreparedBatch, settings: IngestSettings, run_id: int | None) -> None:
    """Archive or set aside the files of a loaded batch (see :func:`_settle_files`)."""
    _settle_files(
        list(batch.outcomes.values()), settings, {item.outcome.path: item for item in batch.parsed}, run_id,
    )


def _read_and_parse(path: Path, settings: IngestSettings) -> _Parsed | FileOutcome:
    source = SourceFile.from_path(path)
    outcome = FileOutcome(path=str(path), outcome="loaded", battle_id=source.name_battle_id)
    try:
        raw, battle = load_log(source, settings.max_bytes)
    except Rejected as rejection:
        _log.info("quarantining %s: %s", path, rejection)
        outcome.outcome, outcome.reason, outcome.detail = "quarantined", rejection.reason, rejection.detail
        outcome.sha256, outcome.size = rejection.sha256, rejection.size
        return outcome
    except FileNotFoundError as error:
        outcome.outcome, outcome.reason, outcome.detail = "failed", "vanished", str(error)
        return outcome
    except OSError as error:
        outcome.outcome, outcome.reason, outcome.detail = "failed", "io_error", str(error)
        return outcome
    outcome.sha256, outcome.size = raw.sha256, raw.size

    archive = files.archive_path(settings.archive_root.absolute(), battle.battle_id)
    outcome.moved_to = str(archive)
    battle_source = BattleSource(
        server=settings.server,
        sha256=raw.sha256,
        size=raw.size,
        source_path=str(path),
        archive_path=str(archive),
    )
    return _Parsed(source, raw, battle, outcome, battle_source)


def _rounds(parsed: list[_Parsed]) -> list[list[_Parsed]]:
    # A battle may appear twice in one batch (a .tzb and its .gz, or a copy):
    # each round contains a battle at most once, so the later file is compared
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


def _frames_of(items: list[_Parsed]) -> Frames:
    # Provisional keys are positions in the round; the database assigns the
    # real ones at load time.
    return build_frames(
        [item.battle for item in items],
        [item.battle_source for item in items],
        list(range(len(items))),
    )


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


def _load_round(connection, round_: _Round, settings: IngestSettings, run_id) -> None:
    items = round_.items
    try:
        if round_.frames is None:
            raise ValueError("the round could not be shaped")
        with connection.transaction(), connection.cursor() as cursor:
            _write_round(cursor, round_, settings, run_id)
    except _DATA_ERRORS as error:
        if len(items) == 1:
            _quarantine_unloadable(connection, items[0], error, settings, run_id)
            return
        # One bad battle must not cost the whole batch: load file by file to
        # find it.
        _log.warning("batch of %d battles failed to load (%s); retrying one by one", len(items), error)
        for item in items:
            try:
                frames = _frames_of([item])
            except _DATA_ERRORS as shape_error:
                _quarantine_unloadable(connection, item, shape_error, settings, run_id)
                continue
            _load_round(connection, _Round([item], frames), settings, run_id)


def _write_round(cursor, round_: _Round, settings: IngestSettings, run_id) -> None:
    items = round_.items
    server = settings.server
    battle_ids = [item.battle.battle_id for item in items]
    load.lock_battles(cursor, server, battle_ids)
    stored = load.stored_battles(cursor, server, battle_ids)

    fresh_positions = []
    replaced_ids = []
    for position, item in enumerate(items):
        outcome = item.outcome
        outcome.days = []
        previous = stored.get(item.battle.battle_id)
        if previous is None:
            outcome.outcome = "loaded"
            fresh_positions.append(position)
        elif previous.sha256 == item.raw.sha256:
            outcome.outcome = "duplicate"
        else:
            outcome.outcome = "replaced"
            outcome.days.append(previous.day)
            replaced_ids.append(previous.id)
            fresh_positions.append(position)

    load.delete_battles(cursor, replaced_ids)
    if fresh_positions:
        keys = np.full(len(items), -1, dtype=np.int64)
        keys[fresh_positions] = load.allocate_ids(cursor, len(fresh_positions))
        frames = _with_keys(round_.frames, keys)
        load.insert_frames(cursor, frames)
        days = frames.battles["started_at"].fillna(frames.battles["ended_at"]).dt.date
        for position, day in zip(fresh_positions, days):
            items[position].outcome.days.append(day)
    _insert_file_rows(cursor, [item.outcome for item in items], run_id, server)


def _with_keys(frames: Frames, keys: np.ndarray) -> Frames:
    """Give frames their database keys and drop the battles that are not loaded.

    ``keys[position]`` is the id of the round's battle at that position, or
    -1 for a duplicate.
    """
    def keyed(frame, column):
        provisional = frame[column].to_numpy()
        wanted = keys[provisional]
        kept = frame[wanted >= 0].copy()
        kept[column] = wanted[wanted >= 0]
        return kept

    return Frames(
        battles=keyed(frames.battles, "id"),
        participants=keyed(frames.participants, "battle"),
        events=keyed(frames.events, "battle"),
        kills=keyed(frames.kills, "battle"),
        loot=keyed(frames.loot, "battle"),
        map_templates=frames.map_templates,
    )


def _quarantine_unloadable(connection, item: _Parsed, error: Exception, settings, run_id) -> None:
    outcome = item.outcome
    _log.error("quarantining %s: the database rejected battle %s: %s", outcome.path, item.battle.battle_id, error)
    outcome.outcome, outcome.reason = "quarantined", "unloadable"
    outcome.detail = f"{type(error).__name__}: {error}"[:500]
    outcome.days = []
    outcome.moved_to = str(files.quarantine_path(settings.quarantine_root, outcome.reason, Path(outcome.path)))
    _record_rejections(connection, [outcome], run_id)


def _settle_files(outcomes: list[FileOutcome], settings: IngestSettings, parsed_by_path, run_id) -> None:
    """Archive or set aside a batch's files after their outcomes were committed.

    New files are written first and synced together, and only then are the
    inputs removed (in move mode). A file that cannot be archived stays
    where it is and its outcome becomes ``failed`` (``archive_failed``): its
    battle is in the database, so the next run finds a duplicate and
    archives it then.
    """
    written: list[Path] = []
    consumed: list[tuple[Path, Path]] = []
    archived_again: list[FileOutcome] = []
    failures: list[FileOutcome] = []
    for outcome in outcomes:
        source = Path(outcome.path)
        try:
            if outcome.outcome in ("loaded", "replaced", "duplicate"):
                item = parsed_by_path[outcome.path]
                target = Path(outcome.moved_to)
                if outcome.outcome != "duplicate" or not target.exists():
                    files.write_archive(
                        target, source, item.raw.original, item.source.compressed, settings.archive_level,
                    )
                    written.append(target)
                    if outcome.outcome == "duplicate":
                        archived_again.append(outcome)
                if settings.move:
                    consumed.append((source, target))
            elif outcome.outcome == "quarantined":
                target = Path(outcome.moved_to)
                if files.set_aside(source, target, settings.move):
                    written.append(target)
                    if settings.move:
                        consumed.append((source, target))
        except OSError as error:
            _log.error("could not archive or set aside %s: %s", source, error)
            outcome.detail = f"{outcome.outcome}, but the file was not archived: {error}"[:500]
            outcome.outcome, outcome.reason = "failed", "archive_failed"
            failures.append(outcome)

    try:
        files.sync_to_disk(written)
    except OSError as error:
        _log.error("could not sync %d archived file(s), keeping the inputs: %s", len(written), error)
        consumed = []
    for source, target in consumed:
        try:
            files.remove_source(source, target)
        except OSError as error:
            _log.error("could not remove consumed input %s: %s", source, error)
    if failures or archived_again:
        _record_settlement(settings, failures, archived_again, run_id)


def _record_settlement(settings: IngestSettings, failures, archived_again, run_id) -> None:
    # Runs on its own short connection, because in a single process the
    # loader thread is using the shared one.
    try:
        with db.connect(settings.dsn) as connection, connection.cursor() as cursor:
            for outcome in failures:
                cursor.execute(
                    "UPDATE ingest_files SET outcome = 'failed', reason = 'archive_failed', detail = %s"
                    " WHERE run IS NOT DISTINCT FROM %s AND path = %s",
                    (outcome.detail, run_id, outcome.path),
                )
                cursor.execute(
                    "UPDATE battles SET archive_path = NULL"
                    " WHERE server = %s AND battle_id = %s AND archive_path = %s",
                    (settings.server, outcome.battle_id, outcome.moved_to),
                )
            for outcome in archived_again:
                cursor.execute(
                    "UPDATE battles SET archive_path = %s"
                    " WHERE server = %s AND battle_id = %s AND archive_path IS DISTINCT FROM %s",
                    (outcome.moved_to, settings.server, outcome.battle_id, outcome.moved_to),
                )
    except psycopg.Error as error:
        _log.error("could not record the archiving of %d file(s): %s", len(failures) + len(archived_again), error)
