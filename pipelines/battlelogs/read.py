"""Find battle-log files on disk and read them into validated UTF-8 bytes.

A log arrives as ``<battle_id>.tzb`` or ``<battle_id>.tzb.gz``, alone or in a
folder tree (flat, or sharded as ``<battle_id // 50000>/<battle_id>.tzb``).
Reading never trusts the file: its size is bounded before and while it is
decompressed, and a file that cannot be read as a log raises
:class:`Rejected` with a stable reason code that ends up in the quarantine.
"""

import gzip
import hashlib
import os
import re
import time
import zlib
from dataclasses import dataclass, field
from logging import getLogger
from pathlib import Path
from typing import Iterable, Iterator


_log = getLogger(__name__)

#: Largest uncompressed log accepted, in bytes. The largest real logs seen are
#: about 290 KB (408 monsters), so 8 MiB leaves ample room while bounding memory.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024

FILE_NAME_RE = re.compile(r"^(?P<id>[0-9]{1,12})\.tzb(?P<gz>\.gz)?$")
LOG_SUFFIXES = (".tzb", ".tzb.gz")

# Bytes 0x01-0x08 are the game protocol's substring-compression tokens. They are
# illegal in XML, so a log carrying them has to be expanded before it can load.
_PROTOCOL_TOKENS = [bytes([code]) for code in range(0x01, 0x09)]
_STRIPPED_BYTES = b"\x00\x1f"
_GZIP_MAGIC = b"\x1f\x8b"
_READ_CHUNK = 256 * 1024


class Rejected(Exception):
    """A file that cannot be loaded; ``reason`` is a stable code for the quarantine."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        # Set once the file has been read, so the quarantine record has them.
        self.sha256: str | None = None
        self.size: int | None = None


@dataclass(frozen=True)
class SourceFile:
    """One input file and what its name says about it."""

    path: Path
    name_battle_id: int | None
    compressed: bool

    @classmethod
    def from_path(cls, path: Path) -> "SourceFile":
        match = FILE_NAME_RE.match(path.name)
        if match is None:
            return cls(path, None, path.name.endswith(".gz"))
        return cls(path, int(match["id"]), match["gz"] is not None)


@dataclass
class RawLog:
    """A log's bytes after reading: decompressed, cleaned and valid UTF-8.

    ``original`` is the uncompressed file exactly as received, which the
    archive keeps; ``data`` is what the parser reads.
    """

    source: SourceFile
    original: bytes
    data: bytes
    sha256: str
    size: int
    flags: set[str] = field(default_factory=set)


def is_log_name(name: str) -> bool:
    return name.endswith(LOG_SUFFIXES) and not name.startswith(".")


def discover(paths: Iterable[Path | str], min_age: float = 0.0) -> Iterator[SourceFile]:
    """Yield the log files named by ``paths``, walking folders recursively.

    A file named explicitly is yielded whatever its name (a bad name is then a
    quarantine reason); inside folders only ``*.tzb`` and ``*.tzb.gz`` count,
    and hidden files are skipped, so partial uploads written as ``.name.tmp``
    are never picked up. ``min_age`` skips files modified less than that many
    seconds ago, for drop folders that other programs are still writing to.
    Folders are walked in sorted order so that runs are reproducible.
    """
    cutoff = time.time() - min_age
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for folder, subfolders, names in os.walk(path):
                subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
                for name in sorted(names):
                    if not is_log_name(name):
                        continue
                    file_path = Path(folder, name)
                    if min_age and _modified_after(file_path, cutoff):
                        continue
                    yield SourceFile.from_path(file_path)
        elif path.exists():
            yield SourceFile.from_path(path)
        else:
            raise FileNotFoundError(f"input path not found: {path}")


def _modified_after(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime > cutoff
    except FileNotFoundError:
        return True


def read_log(source: SourceFile, max_bytes: int = DEFAULT_MAX_BYTES) -> RawLog:
    """Read, decompress, clean and decode-check one log file.

    The SHA-256 is taken over the uncompressed bytes as stored, before any
    cleaning, so ``4100001.tzb`` and its ``.gz`` twin have the same digest.
    NUL and 0x1F bytes (socket framing artefacts) are removed. The text must be
    UTF-8; only when it is not is it decoded as cp1251 and re-encoded, and the
    log is flagged ``cp1251``.
    """
    raw, sniffed_gzip = _read_bounded(source, max_bytes)
    digest = hashlib.sha256(raw).hexdigest()
    size = len(raw)
    flags: set[str] = {"gzip_without_suffix"} if sniffed_gzip else set()

    data = raw.translate(None, _STRIPPED_BYTES)
    if len(data) != size:
        flags.add("control_bytes_removed")
    else:
        data = raw
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        raise Rejected("empty", "the file contains no log text")

    # bytes.find runs at memchr speed, far ahead of a regex search.
    offsets = [offset for offset in map(data.find, _PROTOCOL_TOKENS) if offset >= 0]
    if offsets:
        offset = min(offsets)
        raise Rejected(
            "protocol_tokens",
            f"byte 0x{data[offset]:02x} at offset {offset} is a game-protocol "
            "compression token; expand the tokens before ingesting",
        )

    try:
        data.decode("utf-8")
    except UnicodeDecodeError as utf8_error:
        try:
            data = data.decode("cp1251").encode("utf-8")
        except UnicodeDecodeError as cp1251_error:
            raise Rejected(
                "undecodable",
                f"neither UTF-8 ({utf8_error.reason} at byte {utf8_error.start}) "
                f"nor cp1251 ({cp1251_error.reason} at byte {cp1251_error.start})",
            ) from cp1251_error
        flags.add("cp1251")

    return RawLog(source=source, original=raw, data=data, sha256=digest, size=size, flags=flags)


def _read_bounded(source: SourceFile, max_bytes: int) -> tuple[bytes, bool]:
    """Return the uncompressed bytes and whether a plain-named file was gzip."""
    try:
        if source.compressed:
            return _gunzip_bounded(source.path, max_bytes), False
        size = source.path.stat().st_size
        if size > max_bytes:
            raise Rejected("too_large", f"{size} bytes, the limit is {max_bytes}")
        data = source.path.read_bytes()
        if data.startswith(_GZIP_MAGIC):
            # A .tzb that is really gzip (renamed by hand, or fetched that way).
            return _gunzip_bounded(source.path, max_bytes), True
        return data, False
    except (IsADirectoryError, PermissionError) as error:
        raise Rejected("unreadable", str(error)) from error


def _gunzip_bounded(path: Path, max_bytes: int) -> bytes:
    # Decompress in chunks so that a gzip bomb stops at the limit instead of
    # filling memory.
    chunks = []
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while True:
                chunk = stream.read(_READ_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise Rejected(
                        "too_large",
                        f"more than {max_bytes} bytes once decompressed",
                    )
                chunks.append(chunk)
    except (OSError, EOFError, zlib.error) as error:
        raise Rejected("bad_gzip", f"cannot decompress: {error}") from error
    return b"".join(chunks)
