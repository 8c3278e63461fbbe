import gzip
import hashlib
import os
import time
from pathlib import Path

import pytest

from pipelines.battlelogs.read import Rejected, SourceFile, discover, read_log


DATA = Path(__file__).parent / "data"
SAMPLE = (DATA / "4100001.tzb").read_bytes()


def write(path: Path, data: bytes) -> SourceFile:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return SourceFile.from_path(path)


def test_source_file_name():
    assert SourceFile.from_path(Path("x/4100001.tzb")) == SourceFile(Path("x/4100001.tzb"), 4100001, False)
    assert SourceFile.from_path(Path("4100001.tzb.gz")).compressed
    assert SourceFile.from_path(Path("4100001.tzb.gz")).name_battle_id == 4100001
    assert SourceFile.from_path(Path("battle.tzb")).name_battle_id is None
    assert SourceFile.from_path(Path("41.xml")).name_battle_id is None


def test_plain_and_gzip_read_alike(tmp_path):
    plain = read_log(write(tmp_path / "4100001.tzb", SAMPLE))
    packed = read_log(write(tmp_path / "gz" / "4100001.tzb.gz", gzip.compress(SAMPLE)))
    assert plain.data == packed.data == SAMPLE
    assert plain.sha256 == packed.sha256 == hashlib.sha256(SAMPLE).hexdigest()
    assert plain.size == packed.size == len(SAMPLE)
    assert plain.flags == set()


def test_gzip_named_plain_is_read(tmp_path):
    raw = read_log(write(tmp_path / "4100001.tzb", gzip.compress(SAMPLE)))
    assert raw.data == SAMPLE
    assert raw.original == SAMPLE
    assert raw.sha256 == hashlib.sha256(SAMPLE).hexdigest()
    assert raw.flags == {"gzip_without_suffix"}


def test_control_bytes_removed(tmp_path):
    dirty = SAMPLE.replace(b"<TURN", b"\x00<TURN\x1f")
    raw = read_log(write(tmp_path / "4100001.tzb", dirty))
    assert raw.data == SAMPLE
    assert raw.original == dirty
    assert raw.sha256 == hashlib.sha256(dirty).hexdigest()
    assert "control_bytes_removed" in raw.flags


def test_cp1251_fallback(tmp_path):
    text = SAMPLE.decode().replace("North Wind", "Северный ветер")
    raw = read_log(write(tmp_path / "4100001.tzb", text.encode("cp1251")))
    assert raw.data.decode("utf-8") == text
    assert "cp1251" in raw.flags


def test_utf8_never_reinterpreted(tmp_path):
    text = SAMPLE.decode().replace("North Wind", "Северный ветер")
    raw = read_log(write(tmp_path / "4100001.tzb", text.encode("utf-8")))
    assert raw.data.decode("utf-8") == text
    assert raw.flags == set()


def test_bom_stripped(tmp_path):
    raw = read_log(write(tmp_path / "4100001.tzb", b"\xef\xbb\xbf" + SAMPLE))
    assert raw.data == SAMPLE


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\x00\x00\x1f \n", "empty"),
        (b"<BATTLE \x98\x81>", "undecodable"),
        (b"<BATTLE \x01B>", "protocol_tokens"),
    ],
)
def test_rejected_bytes(tmp_path, data, reason):
    with pytest.raises(Rejected) as error:
        read_log(write(tmp_path / "4100001.tzb", data))
    assert error.value.reason == reason


def test_too_large_plain_not_read(tmp_path):
    source = write(tmp_path / "4100001.tzb", b" " * 2048)
    with pytest.raises(Rejected, match="2048 bytes, the limit is 1024") as error:
        read_log(source, max_bytes=1024)
    assert error.value.reason == "too_large"


def test_gzip_bomb_stops_at_limit(tmp_path):
    source = write(tmp_path / "4100001.tzb.gz", gzip.compress(b"A" * (4 * 1024 * 1024)))
    with pytest.raises(Rejected) as error:
        read_log(source, max_bytes=1024 * 1024)
    assert error.value.reason == "too_large"


@pytest.mark.parametrize("data", [b"not gzip at all", gzip.compress(SAMPLE)[:-20]])
def test_bad_gzip(tmp_path, data):
    with pytest.raises(Rejected) as error:
        read_log(write(tmp_path / "4100001.tzb.gz", data))
    assert error.value.reason == "bad_gzip"


def test_discover_flat_and_sharded(tmp_path):
    write(tmp_path / "flat" / "5.tzb", SAMPLE)
    write(tmp_path / "flat" / "notes.txt", b"x")
    write(tmp_path / "flat" / ".6.tzb.tmp", SAMPLE)
    write(tmp_path / "sharded" / "82" / "4100001.tzb.gz", SAMPLE)
    write(tmp_path / "sharded" / "81" / "4050000.tzb", SAMPLE)
    write(tmp_path / "sharded" / ".hidden" / "7.tzb", SAMPLE)
    found = [s.path.relative_to(tmp_path).as_posix() for s in discover([tmp_path])]
    assert found == ["flat/5.tzb", "sharded/81/4050000.tzb", "sharded/82/4100001.tzb.gz"]


def test_discover_named_file_whatever_its_name(tmp_path):
    source = write(tmp_path / "battle.xml", SAMPLE)
    assert list(discover([source.path])) == [source]


def test_discover_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="input path not found"):
        list(discover([tmp_path / "nope"]))


def test_discover_skips_fresh_files(tmp_path):
    old = write(tmp_path / "1.tzb", SAMPLE)
    os.utime(old.path, (time.time() - 60, time.time() - 60))
    write(tmp_path / "2.tzb", SAMPLE)
    assert [s.path.name for s in discover([tmp_path], min_age=30)] == ["1.tzb"]
