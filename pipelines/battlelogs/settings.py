"""Ingestion settings and per-file outcomes.

Kept apart from the pipeline itself so that the process that only hands out
batches (``runner`` with worker processes) never imports pandas.
"""

import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pipelines.battlelogs.read import DEFAULT_MAX_BYTES


DEFAULT_BATCH_SIZE = 50
DEFAULT_ARCHIVE_LEVEL = 6

OUTCOMES = ("loaded", "replaced", "duplicate", "quarantined", "failed")


@dataclass(frozen=True)
class IngestSettings:
    """Ingestion settings: folders, limits and mode; picklable, so worker processes get a copy."""

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
    """The outcome of one input file, as ingest_files records it."""

    path: str
    outcome: str
    battle_id: int | None = None
    sha256: str | None = None
    size: int | None = None
    reason: str | None = None
    detail: str | None = None
    moved_to: str | None = None
    days: list[date] = field(default_factory=list)


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


def run_batch(paths: list[str], settings: IngestSettings, run_id: int | None) -> list[FileOutcome]:
    """Ingest one batch in a worker process (imports the pipeline on first use)."""
    from pipelines.battlelogs.ingest import ingest_batch

    return ingest_batch(paths, settings, run_id)
