"""A game-server simulator for tests and local development.

It is a real TCP server that speaks the subset of the game protocol this
project uses:

* ADDUSER and NEWPAS (registration);
* LOGIN, GETME and N (bot sessions);
* ``POST t="//blook <id>"`` with GETMYBATTLE (battle logs from a folder);
* SH (shop pages from a folder).

Faults can be switched on at run time to test how clients cope: refused
connections, slow replies, dropped connections, garbage, half frames, and
another battle's log in reply to GETMYBATTLE (``wrong_battle``). A fault
can be limited to commands and to the battle ids they concern.

In-process use (tests)::

    with GameServerSimulator(bots={"bot1": KEY}, logs_dir=path) as simulator:
        send_admin_command("127.0.0.1", simulator.port, text)
        simulator.set_fault("drop", commands={"ADDUSER"}, count=1)

As a process::

    python -m services.game.simulator --port 5190 --logs DIR --shop DIR \\
        --bot LOGIN:KEY --fault slow,delay=3,commands=ADDUSER
    TZR_COLLECT_BOTS=... python -m services.game.simulator --logs DIR --bots-secret TZR_COLLECT_BOTS

It logs one line per command. Password and key attributes are masked in
logs and in the record of received commands.

Replies of the simulator that the real server may well phrase differently
(its codes and texts are not documented): ``<OK id="n"/>`` for ADDUSER,
``<ERROR code="LOGIN_EXISTS"/>``, ``NO_SUCH_USER``, ``LOGIN_FAILED``,
``NOT_LOGGED_IN``, ``NOT_FOUND``, ``BAD_REQUEST``, ``BAD_XML``,
``UNKNOWN_COMMAND`` and ``INTERNAL``. Also guessed: N and POST get no
reply, and battle logs and shop pages are sent as stored, whatever the
socket encoding.
"""

import argparse
import gzip
import logging
import re
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from logging import getLogger
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote

from services.game.framing import (
    DEFAULT_ENCODING,
    DEFAULT_MAX_FRAME_BYTES,
    FRAME_END,
    FrameReader,
    GameConnectionClosed,
    GameProtocolError,
    GameTimeout,
    check_encoding,
)
from services.game.messages import build_element
from services.game.password import is_password_hash
from services.game.replies import parse_reply


_log = getLogger(__name__)

FAULT_MODES = ("ok", "refuse", "slow", "drop", "garbage", "half_frame", "wrong_battle")
MASKED_ATTRIBUTES = frozenset({"p", "pwd", "pwd2"})
MASK = "***"
GARBAGE_REPLY = b"%%% this is not XML %%% \xff\xfe"
#: Seconds that ``--fault slow`` without ``delay=`` holds each reply.
DEFAULT_SLOW_DELAY = 3.0

# How often blocked accept and recv calls wake up to notice stop() and the
# refuse fault, in seconds.
_POLL_SECONDS = 0.05
_SEND_TIMEOUT = 10.0
_SHARD_SIZE = 50000
_SHOP_CATEGORY_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SHOP_PAGE_RE = re.compile(r"[0-9]{1,6}")
_SHOP_FILTER_RE = re.compile(r"[A-Za-z0-9_%~-][A-Za-z0-9_.%~-]{0,250}")
_BLOOK_RE = re.compile(r"^//blook\s+([0-9]{1,12})\s*$")
_BOM = b"\xef\xbb\xbf"


def fold_login(login: str) -> str:
    """Return the form under which two logins count as the same account.

    It imitates a MariaDB/MySQL ``utf8mb4_unicode_ci`` column for the
    characters that registration allows: case is ignored, ё equals е and
    trailing spaces are ignored. The collation's other equivalences
    (accented Latin letters, for example) are not modelled; й and и stay
    different, as they do in that collation (checked on MariaDB 10.11).
    """
    return login.casefold().replace("ё", "е").rstrip(" ")


@dataclass
class Account:
    """An account the simulator created or was given."""

    id: int
    login: str
    password_hash: str = field(repr=False)
    gender: int
    email: str


@dataclass
class FaultRule:
    """A fault applied to received commands.

    ``commands`` limits it to those tags (None: every command, keep-alives
    included). ``count`` is how many more commands it applies to (None: no
    limit). ``delay`` is the pause of ``slow`` in seconds. ``apply`` decides
    whether the command takes effect before a ``drop``, ``garbage`` or
    ``half_frame`` fault: True creates the ADDUSER account and then loses
    the reply, False loses the command itself. ``battles`` limits the rule
    to commands about those battle ids: the ``//blook`` POST that names one,
    and GETMYBATTLE after it. ``wrong_battle`` answers GETMYBATTLE with the
    log of ``other_battle``, by default the lowest other id in the logs
    folder (or a made-up log of the next id when there is none).
    """

    mode: str
    commands: frozenset[str] | None = None
    count: int | None = None
    delay: float = 0.0
    apply: bool = True
    battles: frozenset[int] | None = None
    other_battle: int | None = None

    def matches(self, tag: str, battle_id: int | None = None) -> bool:
        if self.commands is not None and tag not in self.commands:
            return False
        return self.battles is None or battle_id in self.battles


@dataclass
class ReceivedCommand:
    """One frame the simulator received, with password attributes masked."""

    connection: int
    tag: str
    attributes: dict
    #: What the simulator did: the reply's tag and code, "no reply" or "fault <mode>".
    outcome: str = ""
    #: The login the connection had logged in with when the command came, if any.
    login: str | None = None
    #: time.monotonic() when the command was received and when its handling ended.
    received_at: float = 0.0
    finished_at: float | None = None


@dataclass
class _Session:
    id: int
    sock: socket.socket
    login: str | None = None
    battle_id: int | None = None


class GameServerSimulator:
    """A threaded TCP server that imitates the game server; see the module documentation.

    ``bots`` maps a login to its 40-hex LOGIN key; accounts created by
    ADDUSER can also log in with their password transform. ``users_writer``
    is called with each new :class:`Account` before it is kept, so a test
    can mirror accounts into a ``users`` table. If it raises, ADDUSER fails
    with ``INTERNAL`` and no account is kept; the account's id stays used,
    so the next account never gets an id that a failed write may have left
    in the table. ``password_writer`` is called likewise with the changed
    account before NEWPAS takes effect. Both run under the simulator's
    (reentrant) lock, so they may call the simulator's methods but should
    be quick. ``accounts`` are accounts that exist already (those of a
    ``users`` table, see :class:`MariaDBUsers`); new ids start after the
    largest of them, or at ``first_account_id``. A battle log is read from
    ``logs_dir`` as ``<id>.tzb`` or ``<id>.tzb.gz``, flat or in the shard
    folder ``<id // 50000>``. A shop page is read from
    ``shop_dir/<category>/<page>.xml``, and with a filter ``s`` (a group's
    offers) from ``shop_dir/<category>/<percent-encoded s>/<page>.xml``.
    Log replies are written in pieces of ``write_chunk_bytes`` with ``write_pause`` seconds between them, so that
    clients must reassemble frames. ``log_frames`` above 1 splits a log
    into that many NUL-terminated frames; whether the real server ever does
    so is not known.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        logs_dir: str | Path | None = None,
        shop_dir: str | Path | None = None,
        bots: dict[str, str] | None = None,
        greeting: bool = True,
        encoding: str = DEFAULT_ENCODING,
        users_writer: Callable[[Account], None] | None = None,
        password_writer: Callable[[Account], None] | None = None,
        accounts: Iterable[Account] = (),
        first_account_id: int = 1,
        write_chunk_bytes: int = 4096,
        write_pause: float = 0.001,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        log_frames: int = 1,
    ):
        self.host = host
        self.port = port
        self.logs_dir = Path(logs_dir) if logs_dir is not None else None
        self.shop_dir = Path(shop_dir) if shop_dir is not None else None
        self.greeting = greeting
        self.encoding = check_encoding(encoding)
        self.users_writer = users_writer
        self.password_writer = password_writer
        self.write_chunk_bytes = max(1, write_chunk_bytes)
        self.write_pause = write_pause
        self.max_frame_bytes = max_frame_bytes
        self.log_frames = max(1, log_frames)

        # Reentrant, so that users_writer may call find_account and the like.
        self._lock = threading.RLock()
        self._accounts: dict[str, Account] = {}
        self._next_account_id = first_account_id
        for account in accounts:
            self._accounts[fold_login(account.login)] = replace(account)
            self._next_account_id = max(self._next_account_id, account.id + 1)
        self._bots: dict[str, tuple[str, str]] = {}
        for login, key in (bots or {}).items():
            self.add_bot(login, key)
        self._faults: list[FaultRule] = []
        self._received: list[ReceivedCommand] = []
        self._sessions: dict[int, _Session] = {}
        self._threads: list[threading.Thread] = []
        self._next_connection_id = 1
        self.connections_accepted = 0

        self._listener: socket.socket | None = None
        self._refusing = False
        self._relisten_failures = 0
        self._listener_changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._accept_thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> "GameServerSimulator":
        """Bind, listen and start serving. ``port`` is the bound port afterwards."""
        if self._accept_thread is not None:
            raise RuntimeError("the simulator is already running")
        self._listener = self._listen(self.port)
        self.port = self._listener.getsockname()[1]
        self._stopping.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="gamesim-accept", daemon=True)
        self._accept_thread.start()
        _log.info("game server simulator listening on %s:%d", self.host, self.port)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every connection and wait for the threads to end."""
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout)
            self._accept_thread = None
        self.drop_connections()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
        _log.info("game server simulator on port %d stopped", self.port)

    def __enter__(self) -> "GameServerSimulator":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def drop_connections(self) -> int:
        """Close every open client connection now; returns how many were closed."""
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            _shutdown(session.sock)
        return len(sessions)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._sessions)

    # -- accounts

    def add_bot(self, login: str, key: str) -> None:
        """Allow LOGIN as ``login`` with the 40-hex ``key``."""
        if not is_password_hash(key):
            raise ValueError(f"the key of bot {login!r} must be 40 uppercase hexadecimal digits")
        with self._lock:
            self._bots[fold_login(login)] = (login, key)

    def add_account(self, login: str, password_hash: str, gender: int = 1, email: str = "test@test.ru") -> Account:
        """Create an account directly, as if an earlier ADDUSER had succeeded. It is not passed to users_writer."""
        with self._lock:
            account = Account(self._next_account_id, login, password_hash, gender, email)
            self._next_account_id += 1
            self._accounts[fold_login(login)] = account
            return account

    def find_account(self, login: str) -> Account | None:
        """Return the account whose login equals ``login`` under :func:`fold_login`."""
        with self._lock:
            account = self._accounts.get(fold_login(login))
            return replace(account) if account else None

    @property
    def accounts(self) -> list[Account]:
        with self._lock:
            return [replace(account) for account in self._accounts.values()]

    # -- faults

    def set_fault(
        self,
        mode: str,
        *,
        commands: Iterable[str] | None = None,
        count: int | None = None,
        delay: float = 0.0,
        apply: bool = True,
        battles: Iterable[int] | None = None,
        other_battle: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        """Replace all faults with one; ``set_fault("ok")`` clears them.

        ``refuse`` closes the listening socket, so connection attempts are
        refused until another mode is set. It takes no ``commands`` or
        ``count``, because refused connections carry no command; the call
        returns once the listener is closed (or reopened).
        """
        if mode == "refuse":
            if commands is not None or count is not None or battles is not None:
                raise ValueError("the refuse fault cannot be limited to commands, battles or a count")
            with self._lock:
                self._faults = []
            self._set_refusing(True, timeout)
            return
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; use one of {', '.join(FAULT_MODES)}")
        self.clear_faults(timeout)
        if mode != "ok":
            self.add_fault(mode, commands=commands, count=count, delay=delay, apply=apply, battles=battles,
                           other_battle=other_battle)

    def add_fault(
        self,
        mode: str,
        *,
        commands: Iterable[str] | None = None,
        count: int | None = None,
        delay: float = 0.0,
        apply: bool = True,
        battles: Iterable[int] | None = None,
        other_battle: int | None = None,
    ) -> FaultRule:
        """Append a fault rule. Each command takes the first rule that matches it.

        An ``ok`` rule with ``commands`` and ``count`` lets that many commands
        through before the next rule applies.
        """
        if mode not in FAULT_MODES or mode == "refuse":
            allowed = ", ".join(m for m in FAULT_MODES if m != "refuse")
            raise ValueError(f"unknown fault mode {mode!r}; use one of {allowed} (or set_fault('refuse'))")
        if count is not None and count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        if delay < 0:
            raise ValueError(f"delay must not be negative, got {delay}")
        if mode == "slow" and delay == 0:
            raise ValueError("the slow fault needs a delay in seconds, such as delay=3")
        rule = FaultRule(
            mode,
            frozenset(commands) if commands is not None else None,
            count,
            delay,
            apply,
            frozenset(battles) if battles is not None else None,
            other_battle,
        )
        with self._lock:
            self._faults.append(rule)
        return rule

    def clear_faults(self, timeout: float = 5.0) -> None:
        """Remove every fault and accept connections again."""
        with self._lock:
            self._faults = []
        self._set_refusing(False, timeout)

    def _take_fault(self, tag: str, battle_id: int | None = None) -> FaultRule | None:
        with self._lock:
            for rule in self._faults:
                if not rule.matches(tag, battle_id):
                    continue
                if rule.count is not None:
                    rule.count -= 1
                    if rule.count == 0:
                        self._faults.remove(rule)
                return rule
        return None

    # -- record of received commands

    def commands(self, tag: str | None = None) -> list[ReceivedCommand]:
        """Return copies of the commands received so far, optionally only those with ``tag``."""
        with self._lock:
            return [replace(command) for command in self._received if tag is None or command.tag == tag]

    def count_commands(self, tag: str) -> int:
        """Return how many commands with ``tag`` were received."""
        with self._lock:
            return sum(1 for command in self._received if command.tag == tag)

    def clear_commands(self) -> None:
        with self._lock:
            self._received = []

    # -- listening

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, port))
            listener.listen(64)
            listener.settimeout(_POLL_SECONDS)
        except OSError:
            listener.close()
            raise
        return listener

    def _set_refusing(self, refusing: bool, timeout: float) -> None:
        with self._listener_changed:
            self._refusing = refusing
            if self._accept_thread is None:
                return
            closed = refusing
            if not self._listener_changed.wait_for(lambda: (self._listener is None) == closed, timeout):
                raise RuntimeError(f"the simulator did not {'close' if closed else 'reopen'} its listener in {timeout} s")

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            listener = self._update_listener()
            if listener is None:
                time.sleep(_POLL_SECONDS)
                continue
            try:
                sock, _address = listener.accept()
            except TimeoutError:
                continue
            except OSError as error:
                _log.error("accept failed on port %d: %s", self.port, error)
                time.sleep(_POLL_SECONDS)
                continue
            self._start_session(sock)
        with self._listener_changed:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            self._listener_changed.notify_all()

    def _update_listener(self) -> socket.socket | None:
        """Close or reopen the listening socket to match the refuse fault; return it (None while refusing)."""
        with self._listener_changed:
            if self._refusing and self._listener is not None:
                self._listener.close()
                self._listener = None
                _log.info("refuse fault: stopped listening on port %d", self.port)
                self._listener_changed.notify_all()
            elif not self._refusing and self._listener is None:
                try:
                    self._listener = self._listen(self.port)
                except OSError as error:
                    # Log the first failure and then every 100th (100 polls, about 5 s).
                    if self._relisten_failures % 100 == 0:
                        _log.error("cannot listen on port %d again: %s", self.port, error)
                    self._relisten_failures += 1
                    return None
                self._relisten_failures = 0
                _log.info("listening on port %d again", self.port)
                self._listener_changed.notify_all()
            return self._listener

    def _start_session(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            session = _Session(self._next_connection_id, sock)
            self._next_connection_id += 1
            self.connections_accepted += 1
            self._sessions[session.id] = session
            thread = threading.Thread(
                target=self._serve, args=(session,), name=f"gamesim-connection-{session.id}", daemon=True
            )
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    # -- one connection

    def _serve(self, session: _Session) -> None:
        reader = FrameReader(session.sock, self.max_frame_bytes, _POLL_SECONDS, peer=f"client {session.id}")
        try:
            if self.greeting:
                self._send(session, build_element("KEY", {"s": secrets.token_hex(8)}).encode(self.encoding))
            while not self._stopping.is_set():
                try:
                    frame = reader.read_frame()
                except GameTimeout:
                    continue
                if not self._handle(session, frame):
                    break
        except GameConnectionClosed:
            pass
        except GameProtocolError as error:
            _log.warning("connection %d: %s; closing it", session.id, error)
        except OSError as error:
            _log.info("connection %d: %s", session.id, error)
        finally:
            _shutdown(session.sock)
            session.sock.close()
            with self._lock:
                self._sessions.pop(session.id, None)

    def _handle(self, session: _Session, frame: bytes) -> bool:
        """Handle one frame and return False when the connection must close."""
        try:
            request = parse_reply(frame, self.encoding, self.max_frame_bytes)
        except GameProtocolError:
            # The error text would quote the frame, which may contain a password.
            record = self._record(session, "", {})
            self._finish(session, record, self._error("BAD_XML", "the message is not well-formed XML"))
            return True

        tag = request.tag
        record = self._record(session, tag, request.attributes)
        rule = self._take_fault(tag, self._battle_of(session, tag, request.attributes))
        mode = rule.mode if rule else "ok"

        if mode == "slow":
            self._stopping.wait(rule.delay)
        if mode in ("drop", "garbage", "half_frame") and not rule.apply:
            reply = None
        elif mode == "wrong_battle" and tag == "GETMYBATTLE" and session.login and session.battle_id:
            other, reply = self._other_battle_log(session.battle_id, rule.other_battle)
            self._log_command(record, f"fault wrong_battle (the log of battle {other})")
            self._send(session, reply)
            return True
        else:
            reply = self._dispatch(session, tag, request.attributes)

        if mode == "drop":
            self._log_command(record, f"fault drop (command {'applied' if rule.apply else 'ignored'})")
            return False
        if mode == "garbage":
            self._log_command(record, "fault garbage")
            self._send(session, GARBAGE_REPLY)
            return True
        if mode == "half_frame":
            payload = reply if reply is not None else b"<OK/>"
            self._log_command(record, "fault half_frame")
            session.sock.settimeout(_SEND_TIMEOUT)
            session.sock.sendall(payload[: max(1, len(payload) // 2)])
            return False
        self._finish(session, record, reply)
        return True

    def _finish(self, session: _Session, record: ReceivedCommand, reply: bytes | None) -> None:
        self._log_command(record, _describe(reply))
        if reply is not None:
            self._send(session, reply)

    @staticmethod
    def _battle_of(session: _Session, tag: str, attributes: dict) -> int | None:
        """Return the battle id a command concerns, for faults limited to battles."""
        if tag == "GETMYBATTLE":
            return session.battle_id
        if tag == "POST":
            match = _BLOOK_RE.match(attributes.get("t", ""))
            return int(match.group(1)) if match else None
        return None

    def _other_battle_log(self, battle_id: int, other: int | None) -> tuple[int, bytes]:
        """Return another battle's id and log, for the wrong_battle fault."""
        if other is None:
            others = sorted(found for found in self._log_ids() if found != battle_id)
            other = others[0] if others else None
        try:
            data = self._read_battle_log(other) if other is not None else None
        except (OSError, EOFError, GameProtocolError):
            data = None
        if data is None:
            other = battle_id + 1
            data = f'<BLOOK><BATTLE t2="0" turn="1"><USER login="$rat1" battleid="{other}"/></BATTLE></BLOOK>'.encode()
        return other, data

    def _log_ids(self) -> set[int]:
        if self.logs_dir is None or not self.logs_dir.is_dir():
            return set()
        ids = set()
        for path in [*self.logs_dir.iterdir(), *self.logs_dir.glob("*/*")]:
            name = path.name.removesuffix(".gz").removesuffix(".tzb")
            if path.name.endswith((".tzb", ".tzb.gz")) and name.isdigit():
                ids.add(int(name))
        return ids

    def _record(self, session: _Session, tag: str, attributes: dict) -> ReceivedCommand:
        masked = {name: (MASK if name in MASKED_ATTRIBUTES else value) for name, value in attributes.items()}
        record = ReceivedCommand(session.id, tag, masked, login=session.login, received_at=time.monotonic())
        with self._lock:
            self._received.append(record)
        return record

    def _log_command(self, record: ReceivedCommand, outcome: str) -> None:
        with self._lock:
            record.outcome = outcome
            record.finished_at = time.monotonic()
        _log.info("connection %d: %s %s -> %s", record.connection, record.tag or "(invalid)", record.attributes, outcome)

    def _send(self, session: _Session, reply: bytes) -> None:
        """Send one reply and its NUL, in pieces of write_chunk_bytes."""
        data = reply + FRAME_END
        session.sock.settimeout(_SEND_TIMEOUT)
        for start in range(0, len(data), self.write_chunk_bytes):
            if start and self.write_pause:
                time.sleep(self.write_pause)
            session.sock.sendall(data[start : start + self.write_chunk_bytes])

    # -- commands

    def _dispatch(self, session: _Session, tag: str, attributes: dict) -> bytes | None:
        handler = self._HANDLERS.get(tag)
        if handler is None:
            return self._error("UNKNOWN_COMMAND", f"unknown command {tag}")
        return handler(self, session, attributes)

    def _element(self, tag: str, attributes: dict | None = None) -> bytes:
        return build_element(tag, attributes).encode(self.encoding)

    def _error(self, code: str, message: str | None = None) -> bytes:
        attributes = {"code": code}
        if message:
            attributes["msg"] = message
        return self._element("ERROR", attributes)

    def _adduser(self, session: _Session, attributes: dict) -> bytes:
        login = attributes.get("l", "")
        password_hash = attributes.get("p", "")
        gender = attributes.get("g", "")
        email = attributes.get("m", "")
        if not login.strip():
            return self._error("BAD_REQUEST", "l (login) is missing")
        if not is_password_hash(password_hash):
            return self._error("BAD_REQUEST", "p must be 40 uppercase hexadecimal digits")
        if gender not in ("0", "1"):
            return self._error("BAD_REQUEST", "g must be 0 or 1")
        with self._lock:
            key = fold_login(login)
            if key in self._accounts:
                return self._error("LOGIN_EXISTS", "this login is taken")
            # The id is used up even when the write fails: the row may exist.
            account = Account(self._next_account_id, login, password_hash, int(gender), email)
            self._next_account_id += 1
            if self.users_writer is not None:
                try:
                    self.users_writer(replace(account))
                except Exception as error:  # noqa: BLE001 -- any writer failure becomes an ERROR reply
                    _log.error("connection %d: users_writer failed for a new account: %s", session.id, error)
                    return self._error("INTERNAL", "the account could not be stored")
            self._accounts[key] = account
        return self._element("OK", {"id": account.id})

    def _newpas(self, session: _Session, attributes: dict) -> bytes:
        password_hash = attributes.get("pwd2", "")
        if not is_password_hash(password_hash):
            return self._error("BAD_REQUEST", "pwd2 must be 40 uppercase hexadecimal digits")
        with self._lock:
            account = self._accounts.get(fold_login(attributes.get("l", "")))
            if account is None:
                return self._error("NO_SUCH_USER", "no account has this login")
            if self.password_writer is not None:
                try:
                    self.password_writer(replace(account, password_hash=password_hash))
                except Exception as error:  # noqa: BLE001 -- any writer failure becomes an ERROR reply
                    _log.error("connection %d: password_writer failed for account %d: %s", session.id, account.id,
                               error)
                    return self._error("INTERNAL", "the new password could not be stored")
            account.password_hash = password_hash
        return self._element("OK")

    def _login(self, session: _Session, attributes: dict) -> bytes:
        login = attributes.get("l", "")
        key = attributes.get("p", "")
        folded = fold_login(login)
        with self._lock:
            bot = self._bots.get(folded)
            account = self._accounts.get(folded)
            if bot is not None and _same_key(bot[1], key):
                name = bot[0]
            elif account is not None and account.password_hash and _same_key(account.password_hash, key):
                name = account.login
            else:
                name = None
        if name is None:
            session.login = None
            return self._error("LOGIN_FAILED", "wrong login or key")
        session.login = name
        return self._element("OK", {"l": name, "ses": secrets.token_hex(8)})

    def _getme(self, session: _Session, attributes: dict) -> bytes:
        if session.login is None:
            return self._error("NOT_LOGGED_IN")
        return self._element("MYPARAM", {"login": session.login, "level": 10})

    def _keepalive(self, session: _Session, attributes: dict) -> None:
        return None

    def _post(self, session: _Session, attributes: dict) -> bytes | None:
        if session.login is None:
            return self._error("NOT_LOGGED_IN")
        match = _BLOOK_RE.match(attributes.get("t", ""))
        if match:
            session.battle_id = int(match.group(1))
        # Chat lines other than //blook are accepted silently.
        return None

    def _getmybattle(self, session: _Session, attributes: dict) -> bytes:
        if session.login is None:
            return self._error("NOT_LOGGED_IN")
        if session.battle_id is None:
            return self._error("NOT_FOUND", "no battle was selected with //blook")
        try:
            data = self._read_battle_log(session.battle_id)
        except (OSError, EOFError, GameProtocolError) as error:
            _log.error("connection %d: cannot read the log of battle %d: %s", session.id, session.battle_id, error)
            return self._error("INTERNAL", "the battle log could not be read")
        if data is None:
            return self._error("NOT_FOUND", f"no log for battle {session.battle_id}")
        if self.log_frames > 1:
            # _send appends the last NUL, so the pieces are joined with the others.
            size = -(-len(data) // self.log_frames)
            data = FRAME_END.join(data[start : start + size] for start in range(0, len(data), size))
        return data

    def _read_battle_log(self, battle_id: int) -> bytes | None:
        if self.logs_dir is None:
            return None
        shard = str(battle_id // _SHARD_SIZE)
        for folder in (self.logs_dir, self.logs_dir / shard):
            for name, compressed in ((f"{battle_id}.tzb", False), (f"{battle_id}.tzb.gz", True)):
                path = folder / name
                if path.is_file():
                    return self._wrap_log(_read_file(path, compressed, self.max_frame_bytes))
        return None

    @staticmethod
    def _wrap_log(data: bytes) -> bytes:
        # A NUL inside the log would end the frame early.
        data = data.replace(b"\x00", b"")
        data = data.removeprefix(_BOM)
        data = data.strip()
        if data.startswith(b"<BLOOK"):
            return data
        return b"<BLOOK>" + data + b"</BLOOK>"

    def _shop_page(self, session: _Session, attributes: dict) -> bytes:
        if session.login is None:
            return self._error("NOT_LOGGED_IN")
        category = attributes.get("c", "")
        filter_text = attributes.get("s", "")
        page = attributes.get("p", "")
        if self.shop_dir is not None and _SHOP_CATEGORY_RE.fullmatch(category) and _SHOP_PAGE_RE.fullmatch(page):
            folder = self.shop_dir / category
            if filter_text:
                # A group's offers: the folder named by the percent-encoded filter.
                quoted = quote(filter_text, safe="")
                folder = folder / quoted if _SHOP_FILTER_RE.fullmatch(quoted) else None
            path = folder / f"{int(page)}.xml" if folder is not None else None
            if path is not None and path.is_file():
                try:
                    return _read_file(path, False, self.max_frame_bytes).replace(b"\x00", b"").strip()
                except (OSError, GameProtocolError) as error:
                    _log.error("connection %d: cannot read shop page %s: %s", session.id, path, error)
                    return self._error("INTERNAL", "the shop page could not be read")
        return self._element("SH", {"c": category, "s": filter_text, "p": page})

    _HANDLERS: ClassVar[dict] = {
        "ADDUSER": _adduser,
        "NEWPAS": _newpas,
        "LOGIN": _login,
        "GETME": _getme,
        "N": _keepalive,
        "POST": _post,
        "GETMYBATTLE": _getmybattle,
        "SH": _shop_page,
    }


def _read_file(path: Path, compressed: bool, max_bytes: int) -> bytes:
    opener = gzip.open if compressed else open
    with opener(path, "rb") as stream:
        data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise GameProtocolError(f"{path} is larger than {max_bytes} bytes, the frame limit")
    return data


def _same_key(expected: str, given: str) -> bool:
    return secrets.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def _describe(reply: bytes | None) -> str:
    if reply is None:
        return "no reply"
    match = re.match(rb'<([A-Za-z_][A-Za-z0-9_.-]*)(?:[^>]*?\bcode="([^"]*)")?', reply)
    if not match:
        return f"{len(reply)} bytes"
    tag = match.group(1).decode("ascii")
    code = match.group(2).decode("ascii", "replace") if match.group(2) else ""
    return f"{tag} {code} ({len(reply)} bytes)" if code else f"{tag} ({len(reply)} bytes)"


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# -- command line -------------------------------------------------------------


def parse_fault(spec: str) -> dict:
    """Parse ``MODE[,commands=A+B][,count=N][,delay=S][,apply=yes|no][,battles=ID+ID][,other=ID]``.

    The result is the arguments of set_fault/add_fault.
    """
    mode, *options = [part.strip() for part in spec.split(",")]
    if mode not in FAULT_MODES:
        raise argparse.ArgumentTypeError(f"unknown fault mode {mode!r}; use one of {', '.join(FAULT_MODES)}")
    arguments: dict = {"mode": mode}
    for option in options:
        name, sep, value = option.partition("=")
        try:
            if not sep:
                raise ValueError
            if name == "commands":
                arguments["commands"] = [command for command in value.split("+") if command]
            elif name == "count":
                arguments["count"] = int(value)
            elif name == "delay":
                arguments["delay"] = float(value)
            elif name == "apply":
                if value not in ("yes", "no"):
                    raise ValueError
                arguments["apply"] = value == "yes"
            elif name == "battles":
                arguments["battles"] = [int(battle) for battle in value.split("+") if battle]
            elif name == "other":
                arguments["other_battle"] = int(value)
            else:
                raise ValueError
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid fault option {option!r}; expected commands=A+B, count=N, delay=SECONDS, apply=yes|no,"
                " battles=ID+ID or other=ID"
            ) from None
    if mode == "slow":
        arguments.setdefault("delay", DEFAULT_SLOW_DELAY)
    return arguments


def parse_bot(spec: str) -> tuple[str, str]:
    """Parse ``LOGIN:KEY``; the key is the part after the last colon."""
    login, sep, key = spec.rpartition(":")
    if not sep or not login or not is_password_hash(key):
        raise argparse.ArgumentTypeError("expected LOGIN:KEY with a key of 40 uppercase hexadecimal digits")
    return login, key


class MariaDBUsers:
    """The game's ``users`` table in MariaDB, where the simulator keeps its accounts.

    A game server writes a row when it accepts ADDUSER, and registration
    looks there when a reply is lost. The simulator loads the table at
    start (:meth:`load`), inserts each new account (:meth:`insert`) and
    stores each new password transform (:meth:`update_password`), so its
    accounts survive a restart. ``dsn`` is ``mysql://user@host:port/database``;
    the password, if any, comes from the ``MARIADB_PASSWORD`` secret.

    The table needs the columns ``id``, ``login``, ``password`` (the 40-hex
    transform), ``gender`` and ``email``, as ``tzr-gamedb test-schema``
    creates them. NOTE: the real game's name for the password column is not
    known; registration never reads it.
    """

    COLUMNS = ("id", "login", "password", "gender", "email")

    def __init__(self, dsn: str, table: str = "users"):
        from services.common.mariadb import parse_dsn
        from services.common.secrets import read_secret

        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
            raise ValueError(f"{table!r} is not a table name")
        self.table = table
        self.arguments = parse_dsn(dsn)
        self.password = read_secret("MARIADB_PASSWORD", required=False) or ""

    def _connect(self):
        import pymysql

        arguments = self.arguments
        return pymysql.connect(
            host=arguments["host"], port=arguments["port"], user=arguments["user"], password=self.password,
            database=arguments["database"], charset="utf8mb4", autocommit=True, connect_timeout=5,
        )

    def load(self) -> list[Account]:
        """Return every account in the table; a NULL password or gender becomes "" or 1.

        Raises ValueError naming the missing columns when the table lacks
        one, and pymysql errors when MariaDB fails.
        """
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT COLUMN_NAME FROM information_schema.COLUMNS"
                    " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                    (self.table,),
                )
                present = {row[0].lower() for row in cursor.fetchall()}
                missing = [column for column in self.COLUMNS if column not in present]
                if missing:
                    raise ValueError(
                        f"table {self.table} of {self.arguments['database']} lacks the column(s) "
                        f"{', '.join(missing)}; run tzr-gamedb test-schema on it"
                    )
                cursor.execute(f"SELECT id, login, password, gender, email FROM {self.table} ORDER BY id")
                rows = cursor.fetchall()
        finally:
            connection.close()
        return [
            Account(int(id_), login, password or "", 1 if gender is None else int(gender), email or "")
            for id_, login, password, gender, email in rows
        ]

    def insert(self, account: Account) -> None:
        """Insert a new account (a ``users_writer``)."""
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {self.table} (id, login, password, gender, email) VALUES (%s, %s, %s, %s, %s)",
                    (account.id, account.login, account.password_hash, account.gender, account.email),
                )
        finally:
            connection.close()

    def update_password(self, account: Account) -> None:
        """Store an account's new password transform (a ``password_writer``)."""
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"UPDATE {self.table} SET password = %s WHERE id = %s",
                               (account.password_hash, account.id))
        finally:
            connection.close()


def mariadb_users_writer(dsn: str, table: str = "users") -> Callable[[Account], None]:
    """Return a ``users_writer`` that inserts each new account into the game's MariaDB table."""
    return MariaDBUsers(dsn, table).insert


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tzr-gamesim",
        description="Run a game-server simulator on this host, for tests and development.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5190, help="TCP port to listen on; 0 picks a free one (default 5190)")
    parser.add_argument("--logs", type=Path, help="folder of battle logs <id>.tzb[.gz], flat or sharded by id // 50000")
    parser.add_argument("--shop", type=Path, help="folder of shop pages <category>/<page>.xml")
    parser.add_argument(
        "--bot", action="append", type=parse_bot, default=[], metavar="LOGIN:KEY", help="a bot account (repeatable)"
    )
    parser.add_argument(
        "--bots-secret",
        metavar="NAME",
        help="also allow the bot accounts of the secret NAME (or the file NAME_FILE names):"
        " login:KEY entries, one a line or comma-separated, as battle-log collection reads them",
    )
    parser.add_argument(
        "--shop-bots-secret",
        metavar="NAME",
        help="also allow the shop bots of the secret NAME (or the file NAME_FILE names):"
        " shop=login:KEY entries, as the shop service reads them",
    )
    parser.add_argument(
        "--fault",
        action="append",
        type=parse_fault,
        default=[],
        metavar="SPEC",
        help="a fault: MODE[,commands=A+B][,count=N][,delay=SECONDS][,apply=yes|no][,battles=ID+ID][,other=ID],"
        " MODE one of"
        f" {', '.join(FAULT_MODES)} (repeatable; rules are tried in order)",
    )
    parser.add_argument("--no-greeting", action="store_true", help="do not send a <KEY/> greeting on connect")
    parser.add_argument(
        "--users-dsn",
        help="keep accounts in the users table of this MariaDB database (mysql://user@host:port/database),"
        " as the game server does: load them at start, insert new ones and store new passwords",
    )
    parser.add_argument("--encoding", default=DEFAULT_ENCODING, help="socket text encoding: utf-8 (default) or cp1251")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default INFO)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until SIGINT or SIGTERM. Prints ``listening on HOST:PORT`` once it accepts connections."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        encoding = check_encoding(args.encoding)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    bots = dict(args.bot)
    if args.bots_secret:
        from services.common.secrets import SecretError, read_secret
        from services.game.bots import parse_bot_accounts

        try:
            accounts = parse_bot_accounts(read_secret(args.bots_secret), f"secret {args.bots_secret}")
        except (SecretError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        bots.update((account.login, account.key) for account in accounts)
    if args.shop_bots_secret:
        from services.common.secrets import SecretError
        from services.shop.settings import read_shop_bots

        try:
            shop_bots = read_shop_bots(args.shop_bots_secret)
        except (SecretError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        if not shop_bots:
            print(f"error: secret {args.shop_bots_secret} is not set", file=sys.stderr)
            return 2
        bots.update((account.login, account.key) for account in shop_bots.values())

    users, stored_accounts = None, []
    if args.users_dsn:
        import pymysql

        try:
            users = MariaDBUsers(args.users_dsn)
            stored_accounts = users.load()
        except (pymysql.MySQLError, ValueError) as error:
            print(f"error: cannot load the accounts of --users-dsn {args.users_dsn}: {error}", file=sys.stderr)
            return 1
        _log.info("loaded %d accounts from the users table; new ids start after %d", len(stored_accounts),
                  max((account.id for account in stored_accounts), default=0))

    simulator = GameServerSimulator(
        args.host,
        args.port,
        logs_dir=args.logs,
        shop_dir=args.shop,
        bots=bots,
        greeting=not args.no_greeting,
        encoding=encoding,
        users_writer=users.insert if users else None,
        password_writer=users.update_password if users else None,
        accounts=stored_accounts,
    )
    try:
        simulator.start()
    except OSError as error:
        print(f"error: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    try:
        for fault in args.fault:
            fault = dict(fault)
            mode = fault.pop("mode")
            if mode == "refuse":
                simulator.set_fault("refuse", **fault)
            else:
                simulator.add_fault(mode, **fault)
    except ValueError as error:
        simulator.stop()
        print(f"error: invalid --fault: {error}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def request_stop(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print(f"listening on {args.host}:{simulator.port}", flush=True)
    while not stop.wait(0.5):
        pass
    simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
