"""The ``registration`` service: game accounts for Telegram users.

A registration is kept in ``tzr_registrations`` from the moment its login
is reserved, so no step can leave an orphan behind:

1. the request is validated, and the Telegram id is taken from verified
   Login Widget data when the site sends it;
2. a repeated request id returns the stored outcome and sends nothing;
3. the Telegram group membership is checked (cached, and never passed when
   Telegram cannot respond);
4. one transaction checks the per-user limit and the login, and inserts the
   pending registration, whose unique login hold is the final check;
5. ADDUSER goes to the game server, sent again only while no connection
   could be made. ``<OK>`` links the login (tgplayers) and activates the
   registration; a refusal fails it and frees the login; no connection at
   all forgets it, so the same request id may try again; a lost reply is
   settled by looking for the account in the game's ``users`` table.

A timer settles pending registrations that a crashed worker left behind, in
the same way as a lost reply. A request whose caller has stopped waiting
(its deadline in the context data has passed) is refused before step 1 and
before step 4, so a call that waited in the queue while the service was
down never creates an account that the client was told failed.
"""

import time
from logging import getLogger

import eventlet
import pymysql
import redis as redis_library
from nameko.rpc import rpc

from services.common.errors import (
    GameAccountNotFound,
    GameServerError,
    GameServerInternalError,
    GameServerNoReply,
    GameServerTimeout,
    GameServerUnavailable,
    InternalError,
    LoginTaken,
    NoAccounts,
    NotInTelegramGroup,
    RequestIdReused,
    RequestInProgress,
    ServiceError,
    ServiceUnavailable,
    ValidationFailed,
)
from services.common.mariadb import MariaDB, MariaDBUnavailable
from services.common.redis import Redis
from services.common.request_context import RequestContext, request_id_var
from services.common.timer import config_timer
from services.game.client import AdminClient, GameConnectFailed, GameError, GameRefused
from services.game.password import transform_password
from services.registration import store
from services.registration.dependencies import CONFIG_SECTION, RegistrationSettingsProvider
from services.registration.schemas import check_request_id, parse_recover, parse_register
from services.registration.telegram import GroupMembership, verify_login_widget


_log = getLogger(__name__)

# Error codes of the game server that mean the login exists already, that
# it failed inside, and that it has no such account.
LOGIN_EXISTS_CODES = frozenset({"LOGIN_EXISTS", "USER_EXISTS", "EXISTS"})
INTERNAL_ERROR_CODES = frozenset({"INTERNAL"})
NO_ACCOUNT_CODES = frozenset({"NO_SUCH_USER"})
_STORED_ERRORS = {
    cls.code: cls for cls in (LoginTaken, GameServerError, GameServerNoReply, GameServerInternalError)
}
# What registrations settled by look-up stored as their detail before they
# got the game_server_no_reply code.
_LEGACY_NO_REPLY_DETAIL = "no reply from the game server and no account"
_POLL_INTERVAL = 0.2
_DEADLOCK = 1213
_DEADLOCK_ATTEMPTS = 5


class RegistrationService:
    """Creates game accounts and changes their passwords."""

    name = "registration"

    context = RequestContext()
    gamedb = MariaDB("GAMEDB")
    redis = Redis("REDIS")
    settings = RegistrationSettingsProvider()

    # -- RPC ------------------------------------------------------------------

    @rpc(sensitive_arguments=("payload.password",))
    def register(self, payload, request_id):
        """Register a game account; return ``{"login", "telegram_id", "request_id"}``.

        ``payload`` has ``login``, ``password``, ``gender`` and
        ``telegram_id`` or ``telegram_auth``, optionally ``username``.
        Raises the errors of :mod:`services.common.errors`: validation,
        Telegram, limit, login and game-server failures.
        """
        self._refuse_if_expired("registration", request_id)
        request_id = check_request_id(request_id)
        request = parse_register(payload)
        telegram_id = self._telegram_id(request.telegram_id, request.telegram_auth)
        password_hash = transform_password(request.password)
        hash_ = store.request_hash(request.login, request.gender, telegram_id, request.username, password_hash)

        stored = self._stored_outcome(request_id, hash_)
        if stored is not None:
            return stored
        self._check_group(telegram_id)

        # The outcome check and the group check may have waited.
        self._refuse_if_expired("registration", request_id)
        try:
            registration = self._reserve(request_id, hash_, telegram_id, request)
        except store.DuplicateRequest:
            # A concurrent request with this id got there first.
            return self._stored_outcome(request_id, hash_)
        except MariaDBUnavailable as error:
            raise ServiceUnavailable(f"MariaDB is unavailable: {error}") from None
        _log.info("registration %s: reserved login %r for telegram user %s", request_id, request.login, telegram_id)

        self._create_account(registration, password_hash)
        return self._outcome(self._find(request_id))

    @rpc(sensitive_arguments=("payload.password",))
    def recover(self, payload, request_id):
        """Set a new password on every login of a Telegram user; return ``{"logins": [...], "failed": [...]}``.

        ``logins`` lists the logins whose password changed and ``failed``
        the others. Raises ``NoAccounts`` when no login is linked, and an
        error for the game server's answers when it changed none of them.
        """
        self._refuse_if_expired("recovery", request_id)
        check_request_id(request_id)
        request = parse_recover(payload)
        telegram_id = self._telegram_id(request.telegram_id, request.telegram_auth)
        try:
            with self.gamedb.connection() as connection:
                logins = store.linked_logins(connection, telegram_id)
        except MariaDBUnavailable as error:
            raise ServiceUnavailable(f"MariaDB is unavailable: {error}") from None
        if not logins:
            raise NoAccounts(f"telegram user {telegram_id} has no linked logins")

        self._refuse_if_expired("recovery", request_id)
        transform = transform_password(request.password)
        changed, failures = [], {}
        for login in logins:
            try:
                self._game().change_password(login, transform)
                changed.append(login)
            except GameError as error:
                _log.error("recovery %s: NEWPAS for %r failed: %s", request_id, login, error)
                failures[login] = error
        _log.info("recovery %s: changed %d of %d logins of telegram user %s",
                  request_id, len(changed), len(logins), telegram_id)
        if not changed:
            raise _recovery_error(failures)
        return {"logins": changed, "failed": [login for login in logins if login in failures]}

    @rpc
    def ready(self):
        """Return each backend's state: ``{"mariadb": bool, "redis": bool}``."""
        try:
            self.gamedb.ping()
            mariadb = True
        except MariaDBUnavailable:
            mariadb = False
        try:
            redis = bool(self.redis.ping())
        except redis_library.RedisError:
            redis = False
        return {"mariadb": mariadb, "redis": redis}

    @config_timer(CONFIG_SECTION, "reconcile_interval", default=60)
    def settle_stale(self):
        """Settle registrations left pending by a worker that died."""
        try:
            with self.gamedb.connection() as connection:
                stale = store.stale_pending(connection, self.settings.pending_timeout)
        except MariaDBUnavailable as error:
            _log.warning("cannot look for stale registrations: %s", error)
            return
        for registration in stale:
            # The timer has no request of its own: its lines carry the registration's.
            token = request_id_var.set(registration.request_id)
            try:
                _log.warning("registration %s: pending since %s, settling it", registration.request_id,
                             registration.updated_at)
                self._settle_by_lookup(registration, reason="left pending")
            except ServiceUnavailable:
                pass  # logged by _settle_by_lookup; the next tick tries again
            finally:
                request_id_var.reset(token)

    # -- steps ------------------------------------------------------------------

    def _reserve(self, request_id, hash_, telegram_id, request) -> store.Registration:
        """Reserve the login, trying again when MariaDB reports a deadlock."""
        for attempt in range(1, _DEADLOCK_ATTEMPTS + 1):
            try:
                with self.gamedb.connection() as connection:
                    return store.reserve(
                        connection, request_id=request_id, hash_=hash_, telegram_id=telegram_id,
                        username=request.username, login=request.login, gender=request.gender,
                        limit=self.settings.account_limit, users_table=self.settings.users_table,
                    )
            except pymysql.err.OperationalError as error:
                if error.args[0] != _DEADLOCK or attempt == _DEADLOCK_ATTEMPTS:
                    raise
                _log.warning("registration %s: deadlock while reserving, attempt %d", request_id, attempt)
                eventlet.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def _game(self) -> AdminClient:
        settings = self.settings
        return AdminClient(
            host=settings.game_host,
            port=settings.game_port,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.reply_timeout,
            encoding=settings.game_encoding,
            attempts=settings.connect_attempts,
        )

    def _refuse_if_expired(self, operation: str, request_id) -> None:
        """Raise ServiceUnavailable, doing nothing, when the caller's deadline has passed."""
        overdue = self.context.seconds_past_deadline()
        if overdue is None:
            return
        _log.warning("%s %s: the caller stopped waiting %.1f s ago; not carried out", operation, request_id, overdue)
        raise ServiceUnavailable(f"the caller's deadline passed {overdue:.1f} s ago")

    def _telegram_id(self, claimed: int | None, auth: dict | None) -> int:
        settings = self.settings
        if auth is None:
            if settings.require_telegram_auth:
                raise ValidationFailed("telegram_auth is required", fields={"telegram_auth": "field.required"})
            return claimed
        if not settings.bot_token:
            # Without a bot token the widget's hash cannot be checked, so the
            # data is rejected. The site may send telegram_id instead, because
            # the service does not start with require_telegram_auth and no token.
            _log.warning("telegram_auth rejected: set TELEGRAM_BOT_TOKEN or TELEGRAM_BOT_TOKEN_FILE to verify it")
            raise ValidationFailed("telegram_auth cannot be verified without a bot token",
                                   fields={"telegram_auth": "telegram_auth.not_configured"})
        verified = verify_login_widget(auth, settings.bot_token, settings.telegram_auth_max_age)
        if claimed is not None and claimed != verified:
            raise ValidationFailed("telegram_id differs from telegram_auth",
                                   fields={"telegram_id": "telegram_id.mismatch"})
        return verified

    def _check_group(self, telegram_id: int) -> None:
        settings = self.settings
        if not settings.check_group:
            return
        if not GroupMembership(settings.telegram, self.redis).is_member(telegram_id):
            raise NotInTelegramGroup(f"telegram user {telegram_id} is not in group {settings.telegram.group_id}")

    def _find(self, request_id: str) -> store.Registration | None:
        try:
            with self.gamedb.connection() as connection:
                return store.find_by_request(connection, request_id)
        except MariaDBUnavailable as error:
            raise ServiceUnavailable(f"MariaDB is unavailable: {error}") from None

    def _stored_outcome(self, request_id: str, hash_: str):
        """Return the stored outcome of an earlier request with this id, or None.

        A request still pending is waited for up to ``request_wait`` seconds;
        then it raises ``RequestInProgress`` (retryable).
        """
        deadline = time.monotonic() + self.settings.request_wait
        while True:
            registration = self._find(request_id)
            if registration is None:
                return None
            if registration.request_hash != hash_:
                raise RequestIdReused(f"request id {request_id} was used for another registration")
            if registration.state != "pending":
                _log.info("registration %s: repeated request, returning the stored outcome", request_id)
                return self._outcome(registration)
            if self._age(registration) > self.settings.pending_timeout:
                self._settle_by_lookup(registration, reason="the repeated request found it pending")
                continue
            if time.monotonic() >= deadline:
                raise RequestInProgress(f"registration {request_id} is still in progress")
            eventlet.sleep(_POLL_INTERVAL)

    def _age(self, registration: store.Registration) -> float:
        try:
            with self.gamedb.connection() as connection, connection.cursor() as cursor:
                cursor.execute("SELECT TIMESTAMPDIFF(MICROSECOND, %s, NOW(3)) / 1e6", (registration.updated_at,))
                return float(cursor.fetchone()[0])
        except MariaDBUnavailable as error:
            raise ServiceUnavailable(f"MariaDB is unavailable: {error}") from None

    def _outcome(self, registration: store.Registration):
        if registration is None:
            raise GameServerUnavailable("the game server could not be reached")
        if registration.state == "active":
            return {
                "login": registration.login,
                "telegram_id": registration.telegram_id,
                "request_id": registration.request_id,
            }
        if registration.state == "pending":
            raise RequestInProgress(f"registration {registration.request_id} is still in progress")
        error = _STORED_ERRORS.get(registration.error_code, GameServerError)
        if error is GameServerError and (registration.error_detail or "").startswith(_LEGACY_NO_REPLY_DETAIL):
            error = GameServerNoReply
        raise error(registration.error_detail)

    def _create_account(self, registration: store.Registration, password_hash: str) -> None:
        """Send ADDUSER and record what came of it."""
        request_id = registration.request_id
        try:
            reply = self._game().add_user(registration.login, password_hash, registration.gender,
                                          self.settings.account_email)
        except GameConnectFailed as error:
            _log.error("registration %s: game server unreachable, forgetting it: %s", request_id, error)
            self._apply(store.forget, registration)
            raise GameServerUnavailable(str(error)) from None
        except ValueError as error:
            # ADDUSER could not be built, so nothing was sent.
            _log.error("registration %s: ADDUSER not sent, forgetting it: %s", request_id, error)
            self._apply(store.forget, registration)
            raise InternalError(f"ADDUSER could not be built: {error}") from None
        except GameRefused as error:
            code = (error.code or "").upper()
            if code in LOGIN_EXISTS_CODES:
                _log.info("registration %s: the game has login %r already", request_id, registration.login)
                self._apply(store.fail, registration, LoginTaken.code, f"game server: {error.code}")
                raise LoginTaken(f"the game server has login {registration.login!r}") from None
            failure = GameServerInternalError if code in INTERNAL_ERROR_CODES else GameServerError
            _log.error("registration %s: the game server rejected ADDUSER: %s", request_id, error)
            self._apply(store.fail, registration, failure.code, str(error))
            raise failure(str(error)) from None
        except GameError as error:
            # The command may or may not have run. An account in the game's
            # users table settles it now; otherwise the registration stays
            # pending, holding its login, until the timer (or a repeat of
            # the request after pending_timeout) looks again.
            _log.error("registration %s: no usable reply to ADDUSER (%s); looking the account up", request_id, error)
            eventlet.sleep(self.settings.reconcile_delay)
            if not self._activate_if_created(registration):
                raise RequestInProgress(
                    f"the game server did not confirm the account; repeat the request with id {request_id} later"
                ) from None
            return
        account_id = reply.attributes.get("id") if reply is not None else None
        self._apply(store.activate, registration, account_id)
        _log.info("registration %s: account %r created", request_id, registration.login)

    def _activate_if_created(self, registration: store.Registration) -> bool:
        """Activate a registration whose game account exists; return whether it does."""
        try:
            with self.gamedb.connection() as connection:
                account_id = store.game_account_id(connection, registration.login, self.settings.users_table)
                if account_id is None:
                    return False
                store.activate(connection, registration, account_id)
        except MariaDBUnavailable as error:
            raise ServiceUnavailable(f"MariaDB is unavailable: {error}") from None
        _log.info("registration %s: the account exists, activated", registration.request_id)
        return True

    def _settle_by_lookup(self, registration: store.Registration, reason: str) -> bool:
        """Activate or fail a registration by whether its game account exists; return True if active."""
        try:
            with self.gamedb.connection() as connection:
                account_id = store.game_account_id(connection, registration.login, self.settings.users_table)
                if account_id is not None:
                    store.activate(connection, registration, account_id)
                    _log.info("registration %s: the account exists, activated", registration.request_id)
                    return True
                store.fail(connection, registration, GameServerNoReply.code,
                           f"{_LEGACY_NO_REPLY_DETAIL}: {reason}")
                _log.info("registration %s: no account in the game, failed", registration.request_id)
                return False
        except MariaDBUnavailable as error:
            # The registration stays pending; the timer settles it later.
            _log.error("registration %s: cannot settle it now: %s", registration.request_id, error)
            raise ServiceUnavailable(f"MariaDB is unavailable: {error}") from None

    def _apply(self, step, registration, *args) -> None:
        try:
            with self.gamedb.connection() as connection:
                step(connection, registration, *args)
        except MariaDBUnavailable as error:
            _log.error("registration %s: %s not recorded, the timer will settle it: %s",
                       registration.request_id, step.__name__, error)
            raise ServiceUnavailable(f"MariaDB is unavailable: {error}") from None


def _recovery_error(failures: dict[str, GameError]) -> ServiceError:
    """Return the error for a recovery that changed no login, from what failed for each."""
    errors = list(failures.values())
    if all(isinstance(error, GameConnectFailed) for error in errors):
        return GameServerUnavailable("the game server could not be reached")
    refusals = [error for error in errors if isinstance(error, GameRefused)]
    codes = {(error.code or "").upper() for error in refusals}
    if refusals and len(refusals) == len(errors) and codes <= NO_ACCOUNT_CODES:
        logins = ", ".join(failures)
        return GameAccountNotFound(f"the game server has no account {logins}", params={"logins": logins})
    if codes & INTERNAL_ERROR_CODES:
        return GameServerInternalError(str(errors[0]))
    if refusals:
        return GameServerError(str(refusals[0]))
    return GameServerTimeout(str(errors[0]))


__all__ = ["RegistrationService"]
