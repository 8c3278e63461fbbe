"""Registration records in the game's MariaDB database (``tzserver``).

A registration goes pending → active, or pending → failed. While pending
or active it holds its login through the unique ``login_hold`` column, so
the database refuses a second registration of the same login; a failed one
releases it. The caller passes a pymysql connection and owns the
transaction: each function here runs statements and never commits, except
where its documentation says so.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

import pymysql

from services.common.errors import LimitExceeded, LoginTaken


# Logins compare case-insensitively and with е and ё alike, which is how the
# unicode_ci collations of the game's tables compare them.
LOGIN_COLLATION = "utf8mb4_unicode_ci"
_DUPLICATE_ENTRY = 1062


class DuplicateRequest(Exception):
    """A registration with this request id exists already."""


@dataclass(frozen=True)
class Registration:
    """One row of ``tzr_registrations``."""

    id: int
    request_id: str
    request_hash: str
    telegram_id: int
    username: str | None
    login: str
    gender: int
    state: str
    error_code: str | None
    error_detail: str | None
    game_account_id: str | None
    updated_at: datetime


_COLUMNS = (
    "id, request_id, request_hash, telegram_id, username, login, gender, state, error_code,"
    " error_detail, game_account_id, updated_at"
)


def request_hash(login: str, gender: int, telegram_id: int, username: str | None, password_hash: str) -> str:
    """Return a digest of a request's content, to tell a retry from a reuse of its id.

    ``password_hash`` is the game's password transform, which the game's
    ``users`` table stores anyway; the password itself never enters the
    digest, so the digest helps guess it no more than that table does.
    """
    canonical = json.dumps(
        {"login": login, "gender": gender, "telegram_id": telegram_id, "username": username,
         "password_hash": password_hash},
        sort_keys=True, ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def find_by_request(connection, request_id: str) -> Registration | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_COLUMNS} FROM tzr_registrations WHERE request_id = %s", (request_id,))
        row = cursor.fetchone()
    return Registration(*row) if row else None


def reserve(connection, *, request_id: str, hash_: str, telegram_id: int, username: str | None,
            login: str, gender: int, limit: int, users_table: str) -> Registration:
    """Check the limit and the login, then insert a pending registration; commits.

    The Telegram user's quota row is locked first, so concurrent requests of
    one user count their accounts one after the other. The login is checked
    against the game's accounts and links, and the insert itself is the
    final check: the unique ``login_hold`` refuses a login that a concurrent
    request took in the meantime.

    A request id seen before raises :class:`DuplicateRequest`: requests
    with one id come from one user, so the quota lock orders them too.

    Raises :class:`LimitExceeded`, :class:`LoginTaken` or
    :class:`DuplicateRequest`.
    """
    # The quota row is created in a transaction of its own: inserting it and
    # locking it in one would let concurrent first requests of a user
    # deadlock on the upgrade from a shared to an exclusive lock.
    try:
        with connection.cursor() as cursor:
            cursor.execute("INSERT IGNORE INTO tzr_telegram_quota (telegram_id) VALUES (%s)", (telegram_id,))
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT telegram_id FROM tzr_telegram_quota WHERE telegram_id = %s FOR UPDATE",
                           (telegram_id,))
            cursor.execute("SELECT 1 FROM tzr_registrations WHERE request_id = %s", (request_id,))
            if cursor.fetchone() is not None:
                raise DuplicateRequest(request_id)
            cursor.execute("SELECT COUNT(*) FROM tgplayers WHERE telegram_id = %s", (telegram_id,))
            linked = cursor.fetchone()[0]
            cursor.execute(
                "SELECT COUNT(*) FROM tzr_registrations WHERE telegram_id = %s AND state = 'pending'",
                (telegram_id,),
            )
            pending = cursor.fetchone()[0]
            if linked + pending >= limit:
                raise LimitExceeded(
                    f"telegram user {telegram_id} has {linked} linked and {pending} pending accounts",
                    params={"limit": limit},
                )
            if login_in_use(cursor, login, users_table):
                raise LoginTaken(f"login {login!r} is taken")
            cursor.execute(
                "INSERT INTO tzr_registrations"
                " (request_id, request_hash, telegram_id, username, login, login_hold, gender, state)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, 'pending')",
                (request_id, hash_, telegram_id, username, login, login, gender),
            )
            registration_id = cursor.lastrowid
        connection.commit()
    except pymysql.err.IntegrityError as error:
        connection.rollback()
        if error.args[0] != _DUPLICATE_ENTRY:
            raise
        if find_by_request(connection, request_id) is not None:
            raise DuplicateRequest(request_id) from None
        raise LoginTaken(f"login {login!r} is taken") from None
    except BaseException:
        connection.rollback()
        raise
    return find_by_id(connection, registration_id)


def login_in_use(cursor, login: str, users_table: str) -> bool:
    """Tell whether a game account, a link or a live registration uses the login."""
    cursor.execute(
        f"SELECT 1 FROM {users_table} WHERE login = %s COLLATE {LOGIN_COLLATION}"
        f" UNION ALL SELECT 1 FROM tgplayers WHERE login = %s COLLATE {LOGIN_COLLATION}"
        f" UNION ALL SELECT 1 FROM tzr_registrations WHERE login_hold = %s COLLATE {LOGIN_COLLATION}"
        " LIMIT 1",
        (login, login, login),
    )
    return cursor.fetchone() is not None


def find_by_id(connection, registration_id: int) -> Registration:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_COLUMNS} FROM tzr_registrations WHERE id = %s", (registration_id,))
        return Registration(*cursor.fetchone())


def activate(connection, registration: Registration, game_account_id: str | None) -> None:
    """Link the login to the Telegram user and mark the registration active; commits."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE tzr_registrations SET state = 'active', game_account_id = %s, error_code = NULL,"
                " error_detail = NULL WHERE id = %s AND state = 'pending'",
                (game_account_id, registration.id),
            )
            if cursor.rowcount:
                cursor.execute(
                    "INSERT INTO tgplayers (telegram_id, username, login) VALUES (%s, %s, %s)",
                    (registration.telegram_id, registration.username, registration.login),
                )
        connection.commit()
    except BaseException:
        connection.rollback()
        raise


def fail(connection, registration: Registration, code: str, detail: str) -> None:
    """Mark a pending registration failed and release its login; commits."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE tzr_registrations SET state = 'failed', login_hold = NULL, error_code = %s,"
                " error_detail = %s WHERE id = %s AND state = 'pending'",
                (code, detail[:255], registration.id),
            )
        connection.commit()
    except BaseException:
        connection.rollback()
        raise


def forget(connection, registration: Registration) -> None:
    """Delete a pending registration that never reached the game server; commits.

    Nothing happened in the game, so the request id may be sent again.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM tzr_registrations WHERE id = %s AND state = 'pending'", (registration.id,))
        connection.commit()
    except BaseException:
        connection.rollback()
        raise


def game_account_id(connection, login: str, users_table: str) -> str | None:
    """Return the id of the game's account for ``login``, or None when there is none."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {users_table} WHERE login = %s COLLATE {LOGIN_COLLATION}", (login,))
        row = cursor.fetchone()
    connection.commit()  # end the read, so a later call reads new rows
    return None if row is None else str(row[0])


def stale_pending(connection, older_than: float) -> list[Registration]:
    """Return pending registrations untouched for ``older_than`` seconds."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_COLUMNS} FROM tzr_registrations WHERE state = 'pending'"
            " AND updated_at < NOW(3) - INTERVAL %s SECOND ORDER BY id",
            (older_than,),
        )
        rows = cursor.fetchall()
    connection.commit()
    return [Registration(*row) for row in rows]


def linked_logins(connection, telegram_id: int) -> list[str]:
    """Return the game logins linked to a Telegram user, in name order."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT login FROM tgplayers WHERE telegram_id = %s ORDER BY login", (telegram_id,))
        rows = cursor.fetchall()
    connection.commit()
    return [row[0] for row in rows]
