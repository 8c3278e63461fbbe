"""NUL-delimited framing of the game-server socket protocol.

Each message, in both directions, is one XML element followed by a single
NUL byte (0x00). A large reply can arrive in many TCP segments, and one
segment can carry several frames, so :class:`FrameReader` buffers bytes
across reads and hands out whole frames.

This module also defines the base errors of the package, because every
layer above it (replies, client, simulator) raises them.
"""

import codecs
import socket
import time


FRAME_END = b"\x00"

#: Largest frame accepted, in bytes, without its NUL. The largest real battle
#: logs seen are about 290 KB, so 4 MiB leaves ample room while bounding memory.
DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024

DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_ENCODING = "utf-8"

# Encodings in which no character other than NUL itself encodes to a zero
# byte. UTF-16 and the like would put NULs inside frames and break framing.
SUPPORTED_ENCODINGS = ("utf-8", "cp1251")

_RECV_BYTES = 64 * 1024


class GameError(Exception):
    """Base class of the errors about talking to the game server."""

    #: Whether the command surely did not reach the server, so that sending it
    #: again cannot run it twice.
    retry_safe = False


class GameTimeout(GameError):
    """The game server sent no whole frame before the timeout."""

    def __init__(self, message: str, partial_bytes: int = 0):
        super().__init__(message)
        self.partial_bytes = partial_bytes


class GameConnectionClosed(GameError):
    """The connection ended (closed or reset by the peer) between frames."""

    def __init__(self, message: str, partial_bytes: int = 0):
        super().__init__(message)
        self.partial_bytes = partial_bytes


class GameHalfFrame(GameConnectionClosed):
    """The connection ended in the middle of a frame (bytes arrived, but no NUL)."""


class GameProtocolError(GameError):
    """The game server sent something that is not a valid frame or reply."""


class FrameTooLarge(GameProtocolError):
    """A frame exceeded the size limit. The stream cannot be resynchronised."""


def check_encoding(encoding: str) -> str:
    """Return the canonical name of ``encoding``, or raise ValueError if framing cannot use it."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ValueError(f"unknown encoding {encoding!r}; use one of {', '.join(SUPPORTED_ENCODINGS)}") from None
    if name not in SUPPORTED_ENCODINGS:
        raise ValueError(
            f"encoding {encoding!r} is not supported on the game socket; use one of {', '.join(SUPPORTED_ENCODINGS)}"
        )
    return name


def encode_frame(text: str, encoding: str = DEFAULT_ENCODING) -> bytes:
    """Encode one message and append the NUL that ends it.

    Raises ValueError if the text contains a NUL (it would end the frame
    early) or a character that ``encoding`` cannot represent.
    """
    encoding = check_encoding(encoding)
    if "\x00" in text:
        raise ValueError("a frame must not contain a NUL character, because NUL ends the frame")
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError as error:
        raise ValueError(
            f"the message contains {error.object[error.start:error.end]!r}, which {encoding} cannot encode"
        ) from None
    return data + FRAME_END


class FrameReader:
    """A reader of whole NUL-terminated frames from a connected socket.

    ``peer`` names the other end in error messages. Bytes after a frame's NUL stay buffered for the next call. A frame longer
    than ``max_frame_bytes`` raises :class:`FrameTooLarge`; after that the
    connection should be closed, because the frame's end is unknown.
    The reader changes the socket's timeout on every call.
    """

    def __init__(
        self,
        sock: socket.socket,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        timeout: float | None = DEFAULT_READ_TIMEOUT,
        peer: str = "the game server",
    ):
        if max_frame_bytes < 1:
            raise ValueError(f"max_frame_bytes must be positive, got {max_frame_bytes}")
        self.sock = sock
        self.max_frame_bytes = max_frame_bytes
        self.timeout = timeout
        self.peer = peer
        self._buffer = bytearray()
        # Bytes at the start of the buffer already known to contain no NUL, so
        # a frame arriving in many small segments is scanned only once.
        self._scanned = 0

    @property
    def pending(self) -> bytes:
        """The bytes received after the last returned frame."""
        return bytes(self._buffer)

    def read_frame(self, timeout: float | None = None) -> bytes:
        """Return the next frame, without its NUL.

        ``timeout`` (seconds) bounds the whole call, however many segments the
        frame needs; None uses the reader's default, which may itself be None
        for no limit. Raises :class:`GameTimeout`, :class:`GameConnectionClosed`
        (or :class:`GameHalfFrame` when part of a frame had arrived) and
        :class:`FrameTooLarge`. A timeout keeps the partial frame buffered.
        """
        if timeout is None:
            timeout = self.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            frame = self._take_frame()
            if frame is not None:
                return frame
            self._receive(deadline, timeout)

    def _take_frame(self) -> bytes | None:
        end = self._buffer.find(FRAME_END, self._scanned)
        if end < 0:
            self._scanned = len(self._buffer)
            if self._scanned > self.max_frame_bytes:
                raise FrameTooLarge(
                    f"a frame from {self.peer} exceeded {self.max_frame_bytes} bytes without a NUL end;"
                    " close the connection or raise max_frame_bytes"
                )
            return None
        if end > self.max_frame_bytes:
            raise FrameTooLarge(
                f"a frame from {self.peer} has {end} bytes, over the {self.max_frame_bytes}-byte limit;"
                " close the connection or raise max_frame_bytes"
            )
        frame = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        self._scanned = 0
        return frame

    def _receive(self, deadline: float | None, timeout: float | None) -> None:
        if deadline is None:
            self.sock.settimeout(None)
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout_error(timeout)
            self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(_RECV_BYTES)
        except TimeoutError:
            raise self._timeout_error(timeout) from None
        except OSError as error:
            raise self._closed_error(f"the connection to {self.peer} failed: {error}") from None
        if not chunk:
            raise self._closed_error(f"{self.peer} closed the connection")
        self._buffer += chunk

    def _timeout_error(self, timeout: float | None) -> GameTimeout:
        partial = len(self._buffer)
        detail = f" ({partial} bytes of a frame had arrived)" if partial else ""
        waited = "the time allowed" if timeout is None else f"{timeout:.1f} s"
        return GameTimeout(f"{self.peer} sent no whole frame within {waited}{detail}", partial)

    def _closed_error(self, message: str) -> GameConnectionClosed:
        partial = len(self._buffer)
        if partial:
            return GameHalfFrame(f"{message} after half a frame ({partial} bytes without the NUL end)", partial)
        return GameConnectionClosed(message)
