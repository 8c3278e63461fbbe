"""NUL framing: reassembly, several frames per read, limits, timeouts and closed connections."""

import socket
import threading
import time

import pytest

from services.game.framing import (
    FrameReader,
    FrameTooLarge,
    GameConnectionClosed,
    GameHalfFrame,
    GameProtocolError,
    GameTimeout,
    check_encoding,
    encode_frame,
)


class ScriptedSocket:
    """A socket stand-in whose recv returns the given chunks one by one, then b"" (closed)."""

    def __init__(self, chunks):
        self.chunks = list(chunks)
        self.timeouts = []

    def settimeout(self, value):
        self.timeouts.append(value)

    def recv(self, size):
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        if isinstance(chunk, BaseException):
            raise chunk
        return chunk


@pytest.fixture
def socket_pair():
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


def test_frame_split_over_chunks():
    reader = FrameReader(ScriptedSocket([b"<OK", b' id="1', b'"/', b">\x00"]))

    assert reader.read_frame() == b'<OK id="1"/>'
    assert reader.pending == b""


def test_several_frames_in_one_chunk():
    reader = FrameReader(ScriptedSocket([b"<A/>\x00<B/>\x00<C", b"/>\x00"]))

    assert reader.read_frame() == b"<A/>"
    assert reader.pending == b"<B/>\x00<C"
    assert reader.read_frame() == b"<B/>"
    assert reader.read_frame() == b"<C/>"
    assert reader.pending == b""


def test_empty_frame_between_nuls():
    reader = FrameReader(ScriptedSocket([b"\x00<A/>\x00"]))

    assert reader.read_frame() == b""
    assert reader.read_frame() == b"<A/>"


def test_large_frame_in_many_chunks():
    body = b"<BLOOK>" + b"x" * 300_000 + b"</BLOOK>"
    chunks = [body[start : start + 1000] for start in range(0, len(body), 1000)] + [b"\x00"]
    reader = FrameReader(ScriptedSocket(chunks))

    assert reader.read_frame() == body


def test_oversized_frame_without_nul():
    reader = FrameReader(ScriptedSocket([b"x" * 8, b"x" * 8]), max_frame_bytes=10)

    with pytest.raises(FrameTooLarge, match="exceeded 10 bytes"):
        reader.read_frame()


def test_oversized_frame_with_nul():
    reader = FrameReader(ScriptedSocket([b"x" * 11 + b"\x00"]), max_frame_bytes=10)

    with pytest.raises(FrameTooLarge) as caught:
        reader.read_frame()
    assert isinstance(caught.value, GameProtocolError)
    assert "11 bytes" in str(caught.value)


def test_frame_at_size_limit_passes():
    reader = FrameReader(ScriptedSocket([b"x" * 10 + b"\x00"]), max_frame_bytes=10)

    assert reader.read_frame() == b"x" * 10


def test_max_frame_bytes_must_be_positive():
    with pytest.raises(ValueError, match="max_frame_bytes"):
        FrameReader(ScriptedSocket([]), max_frame_bytes=0)


def test_closed_between_frames():
    reader = FrameReader(ScriptedSocket([b"<A/>\x00"]))
    reader.read_frame()

    with pytest.raises(GameConnectionClosed) as caught:
        reader.read_frame()
    assert not isinstance(caught.value, GameHalfFrame)
    assert caught.value.partial_bytes == 0


def test_closed_mid_frame_is_half_frame():
    reader = FrameReader(ScriptedSocket([b"<A/>\x00<BLO", b"OK>"]))
    reader.read_frame()

    with pytest.raises(GameHalfFrame, match="half a frame") as caught:
        reader.read_frame()
    assert caught.value.partial_bytes == 7


def test_reset_is_closed_connection():
    reader = FrameReader(ScriptedSocket([ConnectionResetError(104, "Connection reset by peer")]))

    with pytest.raises(GameConnectionClosed, match="reset"):
        reader.read_frame()


def test_timeout_on_real_socket(socket_pair):
    left, _right = socket_pair
    reader = FrameReader(left, timeout=0.1)

    started = time.monotonic()
    with pytest.raises(GameTimeout) as caught:
        reader.read_frame()
    assert time.monotonic() - started < 1.0
    assert caught.value.partial_bytes == 0


def test_timeout_message_rounds_seconds(socket_pair):
    left, _right = socket_pair
    reader = FrameReader(left, timeout=10)

    with pytest.raises(GameTimeout, match=r"within 0\.1 s$"):
        reader.read_frame(timeout=0.123456789)


def test_timeout_keeps_partial_frame(socket_pair):
    left, right = socket_pair
    reader = FrameReader(left, timeout=0.1)
    right.sendall(b"<OK")

    with pytest.raises(GameTimeout) as caught:
        reader.read_frame()
    assert caught.value.partial_bytes == 3

    right.sendall(b"/>\x00")
    assert reader.read_frame() == b"<OK/>"


def test_timeout_bounds_whole_frame(socket_pair):
    """Bytes that keep trickling in do not extend the timeout."""
    left, right = socket_pair
    stop = threading.Event()

    def trickle():
        while not stop.is_set():
            right.sendall(b"x")
            time.sleep(0.02)

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        reader = FrameReader(left)
        started = time.monotonic()
        with pytest.raises(GameTimeout):
            reader.read_frame(timeout=0.3)
        assert time.monotonic() - started < 1.0
    finally:
        stop.set()
        thread.join()


def test_peer_close_on_real_socket(socket_pair):
    left, right = socket_pair
    reader = FrameReader(left, timeout=1.0)
    right.sendall(b"<OK/>\x00<ER")
    right.close()

    assert reader.read_frame() == b"<OK/>"
    with pytest.raises(GameHalfFrame):
        reader.read_frame()


def test_encode_frame_utf8():
    assert encode_frame('<LOGIN l="Бот"/>') == '<LOGIN l="Бот"/>'.encode("utf-8") + b"\x00"


def test_encode_frame_cp1251():
    data = encode_frame('<LOGIN l="Странник"/>', "cp1251")

    assert data == '<LOGIN l="Странник"/>'.encode("cp1251") + b"\x00"
    assert data.count(b"\x00") == 1


def test_cyrillic_round_trip_both_encodings(socket_pair):
    left, right = socket_pair
    reader = FrameReader(left, timeout=1.0)
    for encoding in ("utf-8", "cp1251"):
        right.sendall(encode_frame('<ADDUSER l="Странник Ёж"/>', encoding))
        assert reader.read_frame().decode(encoding) == '<ADDUSER l="Странник Ёж"/>'


def test_encode_frame_rejects_nul():
    with pytest.raises(ValueError, match="NUL"):
        encode_frame("<A/>\x00<B/>")


def test_encode_frame_rejects_unencodable_text():
    with pytest.raises(ValueError, match="cp1251 cannot encode"):
        encode_frame('<A l="日本"/>', "cp1251")


def test_encoding_names():
    assert check_encoding("UTF8") == "utf-8"
    assert check_encoding("windows-1251") == "cp1251"
    with pytest.raises(ValueError, match="not supported"):
        check_encoding("utf-16")
    with pytest.raises(ValueError, match="unknown encoding"):
        check_encoding("no-such-codec")
