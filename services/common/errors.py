"""Errors that services raise to their callers, and the envelope they become.

Every error has a stable English ``code`` and an HTTP ``status``; the
gateway turns it into ``{"ok": false, "error": code, "message": text,
"fields": {...}, "request_id": id}`` with the message in Russian, or in
English on ``Accept-Language: en``. Each class is registered with nameko's
``deserialize_to_instance``, so it crosses RPC as itself, with its
arguments: ``fields`` maps a request field to a message key of
:mod:`services.common.messages`, and ``params`` fills the message's
placeholders.
"""

from nameko.exceptions import deserialize_to_instance


class ServiceError(Exception):
    """Base class: a failure the caller should see as an envelope."""

    code = "internal_error"
    status = 500
    #: The same request may succeed later (a backend was down or busy).
    retryable = False

    def __init__(self, detail: str | None = None, fields: dict | None = None, params: dict | None = None):
        # nameko sends exc.args across RPC and rebuilds the error from them,
        # turning None into "None"; empty values survive the trip intact.
        detail = detail or ""
        fields = dict(fields or {})
        params = dict(params or {})
        super().__init__(detail, fields, params)
        self.detail = detail
        self.fields = fields
        self.params = params

    def __str__(self) -> str:
        return self.detail or self.code


def _register(cls):
    return deserialize_to_instance(cls)


@_register
class InternalError(ServiceError):
    code, status = "internal_error", 500


@_register
class ValidationFailed(ServiceError):
    code, status = "validation_error", 400


@_register
class BadRequest(ServiceError):
    code, status = "bad_request", 400


@_register
class InvalidApiKey(ServiceError):
    code, status = "invalid_api_key", 401


@_register
class Forbidden(ServiceError):
    code, status = "forbidden", 403


@_register
class NotFound(ServiceError):
    code, status = "not_found", 404


@_register
class BattleNotFound(ServiceError):
    code, status = "battle_not_found", 404


@_register
class PlayerNotFound(ServiceError):
    code, status = "player_not_found", 404


@_register
class ClanNotFound(ServiceError):
    code, status = "clan_not_found", 404


@_register
class LogNotStored(ServiceError):
    code, status = "log_not_stored", 404


@_register
class MethodNotAllowed(ServiceError):
    code, status = "method_not_allowed", 405


@_register
class PayloadTooLarge(ServiceError):
    code, status = "payload_too_large", 413


@_register
class RateLimited(ServiceError):
    code, status, retryable = "rate_limited", 429, True


@_register
class TelegramAuthFailed(ServiceError):
    code, status = "telegram_auth_failed", 401


@_register
class NotInTelegramGroup(ServiceError):
    code, status = "not_in_telegram_group", 403


@_register
class LimitExceeded(ServiceError):
    code, status = "limit_exceeded", 403


@_register
class LoginTaken(ServiceError):
    code, status = "login_taken", 409


@_register
class RequestIdReused(ServiceError):
    code, status = "request_id_reused", 409


@_register
class RequestInProgress(ServiceError):
    code, status, retryable = "request_in_progress", 409, True


@_register
class NoAccounts(ServiceError):
    code, status = "no_accounts", 404


@_register
class GameServerError(ServiceError):
    code, status = "game_server_error", 502


@_register
class GameServerNoReply(ServiceError):
    """A registration failed because the game server never confirmed it and made no account."""

    code, status = "game_server_no_reply", 502


@_register
class GameServerInternalError(ServiceError):
    code, status = "game_server_internal_error", 502


@_register
class GameAccountNotFound(ServiceError):
    code, status = "game_account_not_found", 502


@_register
class GameServerTimeout(ServiceError):
    """The game server gave no usable reply, so whether the command ran is not known."""

    code, status, retryable = "game_server_timeout", 504, True


@_register
class PasswordPartlyChanged(ServiceError):
    code, status, retryable = "password_partly_changed", 502, True


@_register
class GameServerUnavailable(ServiceError):
    code, status, retryable = "game_server_unavailable", 503, True


@_register
class TelegramUnavailable(ServiceError):
    code, status, retryable = "telegram_unavailable", 503, True


@_register
class ServiceUnavailable(ServiceError):
    code, status, retryable = "service_unavailable", 503, True


@_register
class InvalidAdminToken(ServiceError):
    code, status = "invalid_admin_token", 401


@_register
class CollectJobNotFound(ServiceError):
    code, status = "collect_job_not_found", 404


@_register
class CollectJobRunning(ServiceError):
    code, status = "collect_job_running", 409


@_register
class CollectionDisabled(ServiceError):
    code, status = "collection_disabled", 503


@_register
class ShopNotFound(ServiceError):
    code, status = "shop_not_found", 404


@_register
class ShopItemNotFound(ServiceError):
    code, status = "shop_item_not_found", 404


@_register
class ShopSnapshotNotFound(ServiceError):
    code, status = "shop_snapshot_not_found", 404


@_register
class ShopTemplateNotFound(ServiceError):
    code, status = "shop_template_not_found", 404


@_register
class ShopDisabled(ServiceError):
    code, status = "shop_disabled", 503


ERRORS_BY_CODE = {
    cls.code: cls
    for cls in [ServiceError, *ServiceError.__subclasses__()]
}
