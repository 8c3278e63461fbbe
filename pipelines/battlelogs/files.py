"""Archive loaded logs and set quarantined ones aside, atomically.

The archive of a server holds ``<root>/<battle_id // 50000>/<battle_id>.tzb.gz``.
Every file is written to a temporary name in its final folder and renamed
into place, so readers never see half a file, and a crash leaves at most a
hidden ``.tmp`` file behind.
"""

import gzip
import os
import shutil
import tempfile
from logging import getLogger
from pathlib import Path


_log = getLogger(__name__)

SHARD_SIZE = 50_000


def archive_path(root: Path, battle_id: int) -> Path:
    return Path(root) / str(battle_id // SHARD_SIZE) / f"{battle_id}.tzb.gz"


def quarantine_path(root: Path, reason: str, source: Path, sha256: str | None) -> Path:
    """Return where a quarantined file goes: ``<root>/<reason>/<name>``.

    A second file of the same name and reason keeps its own copy, told apart
    by the start of its digest.
    """
    target = Path(root) / reason / source.name
    if sha256 and target.exists():
        target = target.with_name(f"{source.name}.{sha256[:12]}")
    return target


def _atomic_write(target: Path, write) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _copy_of(source: Path):
    def write(stream):
        with source.open("rb") as handle:
            shutil.copyfileobj(handle, stream)
    return write


def write_archive(target: Path, source: Path, raw: bytes, compressed_source: bool, level: int) -> None:
    """Store a loaded log at ``target`` as gzip.

    A ``.gz`` source is copied as it is (it already holds the same bytes);
    a plain source is compressed from ``raw``, its uncompressed bytes.
    """
    if source.resolve() == target.resolve():
        return
    if compressed_source:
        _atomic_write(target, _copy_of(source))
    else:
        def compress(stream):
            with gzip.GzipFile(filename="", mode="wb", fileobj=stream, compresslevel=level, mtime=0) as gz:
                gz.write(raw)
        _atomic_write(target, compress)


def set_aside(source: Path, target: Path, move: bool) -> None:
    """Move (or copy) a quarantined file to ``target`` without overwriting."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if move:
        shutil.move(source, target)
    else:
        _atomic_write(target, _copy_of(source))


def remove_source(source: Path, kept: Path | None) -> None:
    """Delete a consumed input file unless it is the kept copy itself."""
    if kept is not None and source.resolve() == Path(kept).resolve():
        return
    source.unlink(missing_ok=True)
