"""Clients for the game server's socket protocol.

Two kinds of connection exist:

* administrative commands (ADDUSER, NEWPAS): connect, send one frame, read
  one reply, close (:func:`send_admin_command`, :class:`AdminClient`);
* a player session for the bots (:class:`BotSession`): LOGIN once, then
  keep-alives and requests such as battle logs and shop pages.

Errors tell the caller whether a command may have run. Only
:class:`GameConnectFailed` (``retry_safe`` is True) guarantees that the
server never saw the command. After the command was sent, a timeout, a
closed connection, half a frame or garbage all leave it unknown whether
the server carried it out, so an ADDUSER must then be reconciled, not
resent.

The code uses only the standard ``socket``, ``threading`` and ``time``
modules, so it runs in plain threads and, once eventlet has monkey-patched
them, in green threads under Nameko.
"""

import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from logging import getLogger
from typing import TypeVar

from services.game import messages
from services.game.framing import (
    DEFAULT_ENCODING,
    DEFAULT_MAX_FRAME_BYTES,
    FrameReader,
    GameConnectionClosed,
    GameError,
    GameHalfFrame,
    GameProtocolError,
    GameTimeout,
    check_encoding,
    encode_frame,
)
from services.game.messages import ClientIdentity
from services.game.password import is_password_hash
from services.game.replies import Reply, parse_reply


_log = getLogger(__name__)

T = TypeVar("T")

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 10.0
GREETING_TAG = "KEY"

_TAG_RE = re.compile(r"<\s*([A-Za-z_][A-Za-z0-9_.-]*)")
_BATTLE_ID_RE = re.compile(rb"""\bbattleid\s*=\s*["']([0-9]+)["']""")
_BLOOK_START = b"<BLOOK"
_BLOOK_END = b"</BLOOK>"
_MAX_DISCARDED_FRAMES = 1000


class GameConnectFailed(GameError):
    """No connection was made (refused, timed out, name not resolved), or it broke before any byte was sent.

    The server never saw the command, so sending it again is safe.
    """

    retry_safe = True


class GameNoReply(GameError):
    """The command was sent, but no whole reply came back.

    ``reason`` is ``"timeout"``, ``"closed"``, ``"half_frame"`` or
    ``"send_failed"``. The server may have carried the command out.

    NOTE: a proxy in front of the game server (such as an nginx stream proxy)
    accepts the connection even when the game server is down, and then
    closes it. That case also ends here, as ``"closed"``.
    """

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class GameRefused(GameError):
    """The game server replied with ``<ERR>`` or ``<ERROR>``. ``code`` and ``reply`` give the reason."""

    def __init__(self, reply: Reply, context: str = ""):
        self.reply = reply
        self.code = reply.code
        self.server_message = reply.message
        text = f"the game server refused {context}" if context else "the game server refused the command"
        detail = ", ".join(
            part for part in (f"code {reply.code}" if reply.code else "", reply.message or "") if part
        )
        super().__init__(f"{text}: <{reply.tag}> {detail or 'without a code'}")


class GameLoginFailed(GameRefused):
    """The game server rejected the bot's LOGIN (a wrong login or key). Reconnecting will not help."""


class BattleIdMismatch(GameProtocolError):
    """The battle log in the reply is not the one requested."""

    def __init__(self, requested: int, found: int | None):
        self.requested = requested
        self.found = found
        if found is None:
            message = f"the reply to //blook {requested} names no battle id"
        else:
            message = f"the reply to //blook {requested} contains battle {found}"
        super().__init__(message)


# -- one-shot administrative commands ---------------------------------------


def send_admin_command(
    host: str,
    port: int,
    message_text: str,
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    encoding: str = DEFAULT_ENCODING,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    expect_reply: bool = True,
) -> Reply | None:
    """Send one administrative command on a new connection and return the server's ``<OK>`` reply.

    A ``<KEY>`` greeting frame before the reply is skipped. With
    ``expect_reply`` False the call returns None once the frame is sent.

    Raises :class:`GameConnectFailed` (safe to retry), :class:`GameNoReply`,
    :class:`GameRefused` for ``<ERR>``/``<ERROR>``, and
    :class:`GameProtocolError` for a reply that is not XML or is neither OK
    nor an error. ValueError means the message cannot be encoded; nothing
    was sent then.
    """
    command = command_tag(message_text)
    data = encode_frame(message_text, encoding)
    where = f"{host}:{port}"
    sock = open_connection(host, port, connect_timeout)
    try:
        _send_frame(sock, data, read_timeout, command, where)
        if not expect_reply:
            return None
        reader = FrameReader(sock, max_frame_bytes, read_timeout)
        deadline = time.monotonic() + read_timeout
        while True:
            frame = read_reply_frame(reader, deadline, command, where)
            reply = parse_reply(frame, encoding, max_frame_bytes)
            if reply.tag != GREETING_TAG:
                break
    finally:
        sock.close()

    if reply.ok:
        return reply
    if reply.is_error:
        raise GameRefused(reply, command)
    raise GameProtocolError(f"the game server replied to {command} with <{reply.tag}>, which is neither OK nor an error")


def retry_connect_failures(
    operation: Callable[[], T],
    *,
    attempts: int = 3,
    initial_delay: float = 0.5,
    max_delay: float = 5.0,
    sleep: Callable[[float], None] | None = None,
    description: str = "game server command",
) -> T:
    """Call ``operation`` and call it again, up to ``attempts`` times in all, while it raises GameConnectFailed.

    The delay doubles from ``initial_delay`` up to ``max_delay`` seconds.
    Every other error propagates at once, because the command may have run.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    sleep = sleep or time.sleep
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except GameConnectFailed as error:
            if attempt == attempts:
                _log.error("%s failed after %d attempts: %s", description, attempts, error)
                raise
            delay = min(max_delay, initial_delay * 2 ** (attempt - 1))
            _log.warning(
                "%s: %s; retrying in %.1f s (attempt %d of %d)", description, error, delay, attempt, attempts
            )
            sleep(delay)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class AdminClient:
    """Sends ADDUSER and NEWPAS, retrying only when no connection could be made."""

    host: str
    port: int
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    encoding: str = DEFAULT_ENCODING
    attempts: int = 3
    initial_delay: float = 0.5
    max_delay: float = 5.0
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES

    def __post_init__(self):
        object.__setattr__(self, "encoding", check_encoding(self.encoding))

    def send(self, message_text: str, expect_reply: bool = True) -> Reply | None:
        """Send one command; see :func:`send_admin_command` for the errors."""

        def send_once():
            return send_admin_command(
                self.host,
                self.port,
                message_text,
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
                encoding=self.encoding,
                max_frame_bytes=self.max_frame_bytes,
                expect_reply=expect_reply,
            )

        return retry_connect_failures(
            send_once,
            attempts=self.attempts,
            initial_delay=self.initial_delay,
            max_delay=self.max_delay,
            description=f"{command_tag(message_text)} to {self.host}:{self.port}",
        )

    def add_user(self, login: str, password_hash: str, gender: int, email: str = messages.DEFAULT_EMAIL) -> Reply:
        """Create a game account. A taken login raises GameRefused with the server's code."""
        return self.send(messages.adduser(login, password_hash, gender, email))

    def change_password(self, login: str, password_hash: str, expect_reply: bool = True) -> Reply | None:
        """Set a new password transform for an existing account.

        NOTE: whether the real server replies to NEWPAS is not known, because
        the original bot never read a reply. Pass ``expect_reply=False`` if it
        turns out to stay silent.
        """
        return self.send(messages.newpas(login, password_hash), expect_reply)


# -- helpers shared by both connection kinds --------------------------------


def command_tag(message_text: str) -> str:
    """Return the element name of a message, for logs and errors (never its attributes)."""
    match = _TAG_RE.match(message_text)
    return match.group(1) if match else "message"


def open_connection(host: str, port: int, timeout: float) -> socket.socket:
    """Connect over TCP, raising GameConnectFailed on any failure."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        raise GameConnectFailed(f"connecting to the game server at {host}:{port} timed out after {timeout} s") from None
    except OSError as error:
        raise GameConnectFailed(f"could not connect to the game server at {host}:{port}: {error}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _send_frame(sock: socket.socket, data: bytes, timeout: float, command: str, where: str) -> None:
    """Send a whole frame. A failure before the first byte left raises GameConnectFailed, later GameNoReply."""
    sock.settimeout(timeout)
    view = memoryview(data)
    sent = 0
    try:
        while sent < len(data):
            sent += sock.send(view[sent:])
    except OSError as error:
        if sent == 0:
            raise GameConnectFailed(f"the connection to {where} broke before {command} was sent: {error}") from None
        raise GameNoReply(
            f"sending {command} to {where} failed after {sent} of {len(data)} bytes: {error};"
            " the server may have received it",
            "send_failed",
        ) from None


def read_reply_frame(reader: FrameReader, deadline: float, command: str, where: str) -> bytes:
    """Read one frame before ``deadline`` (time.monotonic), turning a missing reply into GameNoReply."""
    remaining = deadline - time.monotonic()
    try:
        if remaining <= 0:
            raise GameTimeout("the reply deadline has passed")
        return reader.read_frame(timeout=remaining)
    except GameTimeout as error:
        reason, detail = "timeout", error
    except GameHalfFrame as error:
        reason, detail = "half_frame", error
    except GameConnectionClosed as error:
        reason, detail = "closed", error
    raise GameNoReply(
        f"no reply to {command} from {where}: {detail}; the command may have run, so do not resend it blindly",
        reason,
    )


def backoff_delay(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Return the pause before retry number ``attempt`` (from 1): doubling, capped, with random jitter in its upper half."""
    delay = min(maximum, initial * 2 ** (attempt - 1))
    return delay * rng.uniform(0.5, 1.0)


# -- the bot's player session -------------------------------------------------


@dataclass(frozen=True)
class BotSettings:
    """Connection, login and timeout settings of a :class:`BotSession`, with times in seconds.

    ``greeting_timeout`` is how long to wait for the optional ``<KEY>``
    greeting before sending LOGIN (0 sends LOGIN at once). ``getme_timeout``
    bounds the wait for MYPARAM after GETME; its absence is only logged.
    ``battle_timeout`` bounds a whole battle-log fetch. ``read_retries`` is
    how many times a read request (battle log, shop page) is sent again on
    a new connection after a timeout or a dropped connection.
    """

    host: str
    port: int
    login: str
    key: str = field(repr=False)
    encoding: str = DEFAULT_ENCODING
    identity: ClientIdentity = field(default_factory=ClientIdentity)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    greeting_timeout: float = 2.0
    getme_timeout: float = 2.0
    battle_timeout: float = 20.0
    keepalive_interval: float = 30.0
    #: Pause between ``//blook`` and GETMYBATTLE, which the original workers also make.
    blook_pause: float = 0.05
    read_retries: int = 1
    reconnect_attempts: int = 5
    reconnect_initial_delay: float = 0.5
    reconnect_max_delay: float = 30.0
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    #: Reply tags that mean LOGIN succeeded. NOTE: the real server's success
    #: reply is not documented; ``<OK>`` is assumed.
    login_ok_tags: tuple[str, ...] = ("OK",)

    def __post_init__(self):
        object.__setattr__(self, "encoding", check_encoding(self.encoding))
        if not isinstance(self.login, str) or not self.login:
            raise ValueError("login must be a non-empty string")
        if not is_password_hash(self.key):
            raise ValueError("key must be 40 uppercase hexadecimal digits")
        for name in ("connect_timeout", "read_timeout", "battle_timeout", "keepalive_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("greeting_timeout", "getme_timeout", "blook_pause", "read_retries"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.reconnect_attempts < 1:
            raise ValueError(f"reconnect_attempts must be at least 1, got {self.reconnect_attempts}")


@dataclass
class _Connection:
    sock: socket.socket
    reader: FrameReader


class BotSession:
    """A logged-in player session for the bots, shared by several callers.

    Only one request is in flight at a time (a lock). While no request is
    sent for ``keepalive_interval`` seconds, a background thread sends
    ``<N/>`` and discards any frames the server pushed meanwhile. A request
    that finds the connection gone reconnects first, with exponential
    backoff and jitter. A timeout also drops the connection, because a late
    reply would otherwise be taken as the reply to the next request.
    """

    def __init__(self, settings: BotSettings, rng: random.Random | None = None):
        self.settings = settings
        self.where = f"{settings.host}:{settings.port}"
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._connection: _Connection | None = None
        self._last_sent = time.monotonic()
        self._stop = threading.Event()
        self._keepalive_thread: threading.Thread | None = None
        self._closed = False
        #: The ``s`` value of the server's ``<KEY>`` greeting, if one came.
        self.server_key: str | None = None
        #: Attributes of the LOGIN success reply (for example ``ses``).
        self.login_reply: dict = {}
        #: Attributes of the last MYPARAM frame.
        self.my_param: dict = {}
        self.connections_opened = 0
        self.keepalives_sent = 0

    # -- lifecycle

    def __enter__(self) -> "BotSession":
        self.connect()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._connection is not None

    def connect(self) -> None:
        """Connect and log in now, unless already connected. Raises like :meth:`request`."""
        with self._lock:
            self._ensure_connected()

    def close(self) -> None:
        """Stop the keep-alive thread and close the connection. The session cannot be used afterwards."""
        self._closed = True
        self._stop.set()
        thread = self._keepalive_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.settings.read_timeout)
        with self._lock:
            self._drop_connection("the session was closed")

    # -- requests

    def send(self, message_text: str) -> None:
        """Send a message that gets no reply (such as a chat line)."""
        with self._lock:
            connection = self._ensure_connected()
            try:
                self._send(connection, message_text)
            except GameError as error:
                self._drop_connection(str(error))
                raise

    def request(
        self,
        message_text: str,
        until_tags: Iterable[str],
        *,
        timeout: float | None = None,
        retries: int = 0,
    ) -> Reply:
        """Send a message and return the first reply whose tag is in ``until_tags``.

        Other frames are skipped. ``<ERR>``/``<ERROR>`` raises GameRefused
        unless its tag is in ``until_tags``. ``timeout`` (default
        ``read_timeout``) bounds the wait for the reply. ``retries`` is how
        many times to send again on a new connection after a timeout or a
        dropped connection. Leave it at 0 for commands that must not run twice.
        """
        tags = frozenset(until_tags)
        wait = self.settings.read_timeout if timeout is None else timeout
        command = command_tag(message_text)

        def exchange(connection: _Connection) -> Reply:
            self._send(connection, message_text)
            return self._read_until(connection, tags, time.monotonic() + wait, command)

        return self._run(exchange, retries)

    def fetch_battle(self, battle_id: int) -> bytes:
        """Return the log of one battle as the server sent it: ``<BLOOK>...</BLOOK>`` without NULs.

        Sends ``//blook <battle_id>`` and GETMYBATTLE, then reads frames until
        the one that closes BLOOK; a log split over several frames is joined.
        Raises GameRefused when the server replies with an error (for example,
        no such battle) and BattleIdMismatch when the log is of another battle.
        """
        blook_message = messages.blook(battle_id)

        def exchange(connection: _Connection) -> bytes:
            self._send(connection, blook_message)
            if self.settings.blook_pause:
                time.sleep(self.settings.blook_pause)
            try:
                self._send(connection, messages.getmybattle())
            except GameConnectFailed as error:
                # //blook did reach the server, so this is no longer a clean
                # failure before sending.
                raise GameNoReply(str(error), "send_failed") from error
            data = self._read_blook(connection, time.monotonic() + self.settings.battle_timeout, battle_id)
            found = _battle_id_of(data)
            if found != battle_id:
                raise BattleIdMismatch(battle_id, found)
            return data

        return self._run(exchange, self.settings.read_retries)

    def shop_page(self, category: str, filter_text: str = "", page: int = 0) -> Reply:
        """Return one shop page, the ``<SH>`` reply, after checking that it echoes the requested category and page."""
        message_text = messages.shop_page(category, filter_text, page)

        def exchange(connection: _Connection) -> Reply:
            self._send(connection, message_text)
            reply = self._read_until(connection, {"SH"}, time.monotonic() + self.settings.read_timeout, "SH")
            echoed = {"c": category, "p": str(page)}
            for name, expected in echoed.items():
                value = reply.get(name)
                if value is not None and value != expected:
                    raise GameProtocolError(
                        f"the shop reply is for {name}={value!r}, but {name}={expected!r} was requested"
                    )
            return reply

        return self._run(exchange, self.settings.read_retries)

    # -- internals: the methods below run under self._lock, which _run, connect and send take

    def _run(self, exchange: Callable[[_Connection], T], retries: int) -> T:
        with self._lock:
            attempt = 0
            # A connection that broke before the first byte of the request
            # left gets one more try on a new connection, even with retries=0,
            # because the server cannot have seen that request.
            unsent_retry_left = True
            while True:
                connection = self._ensure_connected()
                try:
                    return exchange(connection)
                except GameRefused:
                    # The server replied, so the connection is still in step.
                    raise
                except GameConnectFailed as error:
                    self._drop_connection(str(error))
                    if not unsent_retry_left:
                        raise
                    unsent_retry_left = False
                    _log.warning("bot %s: %s; reconnecting and sending again", self.settings.login, error)
                except GameNoReply as error:
                    self._drop_connection(str(error))
                    if attempt >= retries:
                        raise
                    attempt += 1
                    _log.warning(
                        "bot %s: %s; reconnecting and sending again (retry %d of %d)",
                        self.settings.login,
                        error,
                        attempt,
                        retries,
                    )
                except GameError as error:
                    self._drop_connection(str(error))
                    raise

    def _ensure_connected(self) -> _Connection:
        if self._closed:
            raise GameError("the bot session is closed")
        connection = self._connection
        if connection is not None:
            if _peer_has_closed(connection.sock):
                self._drop_connection("the game server closed the connection while idle")
            else:
                return connection

        last_error: GameError | None = None
        for attempt in range(1, self.settings.reconnect_attempts + 1):
            if attempt > 1:
                delay = backoff_delay(
                    attempt - 1, self.settings.reconnect_initial_delay, self.settings.reconnect_max_delay, self._rng
                )
                _log.warning(
                    "bot %s: cannot log in to %s (%s); retrying in %.1f s (attempt %d of %d)",
                    self.settings.login,
                    self.where,
                    last_error,
                    delay,
                    attempt,
                    self.settings.reconnect_attempts,
                )
                time.sleep(delay)
            try:
                return self._open()
            except GameLoginFailed:
                raise
            except GameError as error:
                last_error = error
        _log.error(
            "bot %s: giving up logging in to %s after %d attempts: %s",
            self.settings.login,
            self.where,
            self.settings.reconnect_attempts,
            last_error,
        )
        raise GameConnectFailed(
            f"bot {self.settings.login} could not log in to {self.where}"
            f" after {self.settings.reconnect_attempts} attempts: {last_error}"
        ) from last_error

    def _open(self) -> _Connection:
        settings = self.settings
        sock = open_connection(settings.host, settings.port, settings.connect_timeout)
        connection = _Connection(sock, FrameReader(sock, settings.max_frame_bytes, settings.read_timeout))
        try:
            self._read_greeting(connection)
            self._log_in(connection)
            self._read_my_param(connection)
        except BaseException:
            sock.close()
            raise
        self._connection = connection
        self.connections_opened += 1
        _log.info("bot %s: logged in to %s", settings.login, self.where)
        self._start_keepalive()
        return connection

    def _read_greeting(self, connection: _Connection) -> None:
        self.server_key = None
        if not self.settings.greeting_timeout:
            return
        try:
            frame = connection.reader.read_frame(timeout=self.settings.greeting_timeout)
        except GameTimeout:
            _log.debug("bot %s: no greeting from %s", self.settings.login, self.where)
            return
        except GameConnectionClosed as error:
            raise GameConnectFailed(
                f"the game server at {self.where} closed the connection before LOGIN: {error}"
            ) from error
        reply = parse_reply(frame, self.settings.encoding, self.settings.max_frame_bytes)
        if reply.tag == GREETING_TAG:
            self.server_key = reply.get("s")
        else:
            _log.debug("bot %s: skipped <%s> before LOGIN", self.settings.login, reply.tag)

    def _log_in(self, connection: _Connection) -> None:
        settings = self.settings
        self._send(connection, messages.login(settings.login, settings.key, settings.identity))
        deadline = time.monotonic() + settings.read_timeout
        ok_tags = frozenset(settings.login_ok_tags)
        while True:
            frame = read_reply_frame(connection.reader, deadline, "LOGIN", self.where)
            reply = parse_reply(frame, settings.encoding, settings.max_frame_bytes)
            if reply.is_error:
                _log.error("bot %s: LOGIN rejected by %s: code %s", settings.login, self.where, reply.code)
                raise GameLoginFailed(reply, f"LOGIN of bot {settings.login} (check the login and key)")
            if reply.tag in ok_tags:
                self.login_reply = reply.attributes
                return
            if reply.tag == GREETING_TAG:
                self.server_key = reply.get("s")
            else:
                _log.debug("bot %s: skipped <%s> while waiting for the LOGIN reply", settings.login, reply.tag)

    def _read_my_param(self, connection: _Connection) -> None:
        self._send(connection, messages.getme())
        deadline = time.monotonic() + self.settings.getme_timeout
        try:
            reply = self._read_until(connection, {"MYPARAM"}, deadline, "GETME")
        except GameNoReply as error:
            if error.reason != "timeout":
                raise
            _log.warning("bot %s: no MYPARAM after GETME within %s s", self.settings.login, self.settings.getme_timeout)
            return
        self.my_param = reply.attributes

    def _send(self, connection: _Connection, message_text: str) -> None:
        data = encode_frame(message_text, self.settings.encoding)
        _send_frame(connection.sock, data, self.settings.read_timeout, command_tag(message_text), self.where)
        self._last_sent = time.monotonic()

    def _read_until(self, connection: _Connection, tags: frozenset, deadline: float, command: str) -> Reply:
        settings = self.settings
        while True:
            frame = read_reply_frame(connection.reader, deadline, command, self.where)
            reply = parse_reply(frame, settings.encoding, settings.max_frame_bytes)
            if reply.tag in tags:
                return reply
            if reply.is_error:
                raise GameRefused(reply, command)
            _log.debug("bot %s: skipped <%s> while waiting for %s", settings.login, reply.tag, sorted(tags))

    def _read_blook(self, connection: _Connection, deadline: float, battle_id: int) -> bytes:
        settings = self.settings
        command = f"//blook {battle_id}"
        parts: list[bytes] = []
        size = 0
        while True:
            frame = read_reply_frame(connection.reader, deadline, command, self.where)
            if not parts:
                head = frame.lstrip()
                if head.startswith(_BLOOK_START):
                    parts.append(frame)
                    size = len(frame)
                    if _closes_blook(frame):
                        return frame
                    continue
                if head.startswith(b"<ERR"):
                    reply = parse_reply(frame, settings.encoding, settings.max_frame_bytes)
                    raise GameRefused(reply, command)
                _log.debug("bot %s: skipped a frame while waiting for BLOOK: %r", settings.login, frame[:40])
                continue
            size += len(frame)
            if size > settings.max_frame_bytes:
                raise GameProtocolError(
                    f"the battle log for {battle_id} exceeds {settings.max_frame_bytes} bytes; raise max_frame_bytes"
                )
            parts.append(frame)
            if _closes_blook(frame):
                return b"".join(parts)

    def _drop_connection(self, reason: str) -> None:
        connection = self._connection
        if connection is None:
            return
        self._connection = None
        try:
            connection.sock.close()
        except OSError:
            pass
        _log.info("bot %s: disconnected from %s: %s", self.settings.login, self.where, reason)

    # -- keep-alive

    def _start_keepalive(self) -> None:
        if self._keepalive_thread is not None:
            return
        self._keepalive_thread = threading.Thread(
            target=self._keepalive_loop, name=f"game-keepalive-{self.settings.login}", daemon=True
        )
        self._keepalive_thread.start()

    def _keepalive_loop(self) -> None:
        interval = self.settings.keepalive_interval
        # While disconnected or busy, look again after this many seconds
        # instead of spinning on an overdue deadline.
        idle_check = min(interval, 1.0)
        pause = interval
        while not self._stop.wait(pause):
            pause = idle_check
            if self._connection is None:
                continue
            due_in = self._last_sent + interval - time.monotonic()
            if due_in > 0:
                pause = due_in
                continue
            # A request in flight keeps the connection busy, so skip this turn.
            if not self._lock.acquire(blocking=False):
                continue
            try:
                self._send_keepalive()
            finally:
                self._lock.release()
            pause = interval

    def _send_keepalive(self) -> None:
        connection = self._connection
        if connection is None or self._closed or time.monotonic() - self._last_sent < self.settings.keepalive_interval:
            return
        try:
            self._send(connection, messages.keepalive())
            self.keepalives_sent += 1
            skipped = self._discard_pushed_frames(connection)
        except GameError as error:
            _log.warning("bot %s: keep-alive failed: %s", self.settings.login, error)
            self._drop_connection(str(error))
            return
        if skipped:
            _log.debug("bot %s: discarded %d pushed frames", self.settings.login, skipped)

    def _discard_pushed_frames(self, connection: _Connection) -> int:
        """Read and drop frames that are already waiting, so that pushed frames do not fill the socket buffers."""
        count = 0
        # The bound keeps a server that never stops pushing from holding the
        # session lock; the rest waits for the next keep-alive.
        while count < _MAX_DISCARDED_FRAMES:
            try:
                connection.reader.read_frame(timeout=0.01)
            except GameTimeout:
                return count
            except GameConnectionClosed as error:
                raise GameNoReply(f"the game server at {self.where} closed the session: {error}", "closed") from None
            count += 1
        return count


def _peer_has_closed(sock: socket.socket) -> bool:
    """Return whether the peer has closed or reset the connection, without waiting or consuming data."""
    try:
        sock.settimeout(0.0)
        data = sock.recv(1, socket.MSG_PEEK)
    except (BlockingIOError, InterruptedError, TimeoutError):
        return False
    except OSError:
        return True
    return data == b""


def _closes_blook(frame: bytes) -> bool:
    tail = frame.rstrip()
    return tail.endswith(_BLOOK_END) or (tail.startswith(_BLOOK_START) and tail.endswith(b"/>") and b"<" not in tail[1:])


def _battle_id_of(data: bytes) -> int | None:
    match = _BATTLE_ID_RE.search(data)
    return int(match.group(1)) if match else None

