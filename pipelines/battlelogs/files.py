"""Archive loaded logs and set quarantined ones aside, atomically.

The archive of a server contains ``<root>/<battle_id // 50000>/<battle_id>.tzb.gz``.
Every file is written to a temporary name in its final folder and renamed
into place, so readers never see half a file, and a crash leaves at most a
hidden ``.tmp`` file behind.
"""

import ctypes
import gzip
import hashlib
import os
import shutil
import tempfile
import time
from logging import getLogger
from pathlib import Path


_log = getLogger(__name__)

SHARD_SIZE = 50_000


def archive_path(root: Path, battle_id: int) -> Path:
    return Path(root) / str(battle_id // SHARD_SIZE) / f"{battle_id}.tzb.gz"


def file_sha256(path: Path) -> str:
    """Return the SHA-256 of a file's bytes as stored, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def quarantine_path(root: Path, reason: str, source: Path) -> Path:
    """Return where a quarantined file goes: ``<root>/<reason>/<name>``.

    The same file quarantined again maps to the copy already there. A
    different file of the same name and reason gets ``<name>.<digest
    prefix>``, so nothing set aside is ever overwritten.
    """
    target = Path(root).absolute() / reason / source.name
    if not target.exists():
        return target
    try:
        digest = file_sha256(source)
        if file_sha256(target) == digest:
            return target
        suffix = digest[:12]
    except OSError:
        suffix = str(time.time_ns())  # unreadable: the copy will fail and be logged
    return target.with_name(f"{source.name}.{suffix}")


def _atomic_write(target: Path, write) -> None:
    # Not synced here: a batch writes many files and then syncs them all at
    # once with sync_to_disk, which costs one journal commit, not one a file.
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        # mkstemp creates the file 0600; archives are as readable as other data files.
        os.chmod(temporary, 0o644)
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

    A ``.gz`` source is copied as it is (it already contains the same bytes);
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
    """Move (or copy) a quarantined file to ``target``; return True if it was copied.

    A move within one file system is a rename and needs no sync. A copy is
    synced with the rest of the batch before any input is deleted. When
    ``target`` already contains the same bytes, nothing is written.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        if move:
            remove_source(source, target)
        return False
    if move and os.stat(source).st_dev == os.stat(target.parent).st_dev:
        os.replace(source, target)
        return False
    _atomic_write(target, _copy_of(source))
    return True


def _load_syncfs():
    # syncfs(2) flushes one file system in a single call, where an fsync per
    # file costs a journal commit each (1,010 fsyncs took 2.9 s on ext4 on the
    # development machine). Linux only.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()


def sync_to_disk(paths: list[Path]) -> None:
    """Flush written files and their folder entries to disk.

    Called before the inputs of a batch are deleted, so that a crash cannot
    lose a log that exists only in the page cache.
    """
    folders = {Path(path).parent for path in paths}
    if _syncfs is not None:
        devices = {}
        for folder in folders:
            devices.setdefault(os.stat(folder).st_dev, folder)
        for folder in devices.values():
            descriptor = os.open(folder, os.O_RDONLY)
            try:
                if _syncfs(descriptor) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, f"syncfs failed on {folder}: {os.strerror(error)}")
            finally:
                os.close(descriptor)
        return
    for path in [*paths, *folders]:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def remove_source(source: Path, kept: Path | None) -> None:
    """Delete a consumed input file unless it is the kept copy itself."""
    if kept is not None and source.resolve() == Path(kept).resolve():
        return
    source.unlink(missing_ok=True)
