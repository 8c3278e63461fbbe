"""Job handlers: each checks the payload, calls one service and shapes the result the website expects.

A handler returns the ``result`` object of a successful result, or raises
:class:`~site_agent.protocol.JobRejected` or a
:class:`~services.common.errors.ServiceError`, which become ``ok: false``
results. Register and recover payloads carry the password encrypted
(``password_encrypted``); it is decrypted here, handed to the service and
never logged.
"""

import time
from datetime import datetime, timezone
from logging import getLogger

from site_agent import crypto
from site_agent.protocol import JobRejected


_log = getLogger(__name__)

_REGISTER_REQUIRED = ("login", "password_encrypted", "gender", "telegram_id")
_REGISTER_OPTIONAL = ("username", "telegram_auth")
_RATES = ("exp", "pvp", "pve", "color_mob", "skill")

# Read-only battle and player queries: job type -> (battles method, positional payload keys).
QUERIES = {
    "search_battles": ("search_battles", ()),
    "get_battle": ("get_battle", ("battle_id",)),
    "player_profile": ("player_profile", ("login",)),
    "player_allies": ("player_allies", ("login",)),
    "player_rivals": ("player_rivals", ("login",)),
    "top_players": ("top_players", ()),
    "clan_profile": ("clan_profile", ("name",)),
}


class Revision:
    """A counter that grows with every status result of this process: Unix seconds, or the last value plus one."""

    def __init__(self):
        self._last = 0

    def next(self) -> int:
        self._last = max(int(time.time()), self._last + 1)
        return self._last


class JobRunner:
    """Runs a checked job through ``backend`` (see :class:`site_agent.backend.RpcBackend`)."""

    def __init__(self, backend, aes_key: bytes, register_timeout: float, query_timeout: float):
        self.backend = backend
        self.aes_key = aes_key
        self.register_timeout = register_timeout
        self.query_timeout = query_timeout
        self.revision = Revision()
        self.handlers = {
            "register": self.register,
            "recover": self.recover,
            "get_server_status": self.server_status,
            **{job_type: self._query(job_type) for job_type in QUERIES},
        }

    def knows(self, job_type: str) -> bool:
        return job_type in self.handlers

    async def run(self, job) -> dict:
        return await self.handlers[job.job_type](job)

    def _password(self, payload: dict, job_id: str) -> str:
        try:
            return crypto.decrypt(payload["password_encrypted"], self.aes_key)
        except crypto.DecryptionFailed as error:
            _log.warning("job %s: %s", job_id, error)
            raise JobRejected("decryption_failed", str(error)) from None

    @staticmethod
    def _require(payload: dict, names) -> None:
        missing = [name for name in names if name not in payload]
        if missing:
            raise JobRejected("malformed_job", f"payload lacks {', '.join(missing)}",
                              params={"reason": f"в данных нет {', '.join(missing)}"})

    async def register(self, job) -> dict:
        payload = job.payload
        self._require(payload, _REGISTER_REQUIRED)
        request = {name: payload[name] for name in ("login", "gender", "telegram_id")}
        for name in _REGISTER_OPTIONAL:
            if payload.get(name) is not None:
                request[name] = payload[name]
        request["password"] = self._password(payload, job.id)
        result = await self.backend.call("registration", "register", request, job.id,
                                         timeout=self.register_timeout, request_id=job.id)
        _log.info("job %s: registered login %r", job.id, result.get("login"))
        # The website reads {ok, user_id, error}; the services do not expose the game's user id.
        return {"ok": True, "user_id": None, "error": None}

    async def recover(self, job) -> dict:
        payload = job.payload
        self._require(payload, ("password_encrypted",))
        if "telegram_id" not in payload and "telegram_auth" not in payload:
            self._require(payload, ("telegram_id",))
        request = {name: payload[name] for name in ("telegram_id", "telegram_auth") if name in payload}
        request["password"] = self._password(payload, job.id)
        result = await self.backend.call("registration", "recover", request, job.id,
                                         timeout=self.register_timeout, request_id=job.id)
        return {"ok": not result.get("failed"), "logins": result.get("logins", []),
                "failed": result.get("failed", [])}

    async def server_status(self, job) -> dict:
        status = await self.backend.call("status", "get_status", timeout=self.query_timeout, request_id=job.id)
        constant = status.get("server_status")
        # 1 only when the game's ServerStatus constant is 1 and its port accepts connections.
        online = 1 if constant is not None and int(constant) == 1 and status.get("online") else 0
        rates = status.get("rates") or {}
        return {
            "server_status": online,
            "rates": {name: float(rates.get(name) if rates.get(name) is not None else 1.0) for name in _RATES},
            "generated_at": datetime.now(timezone.utc).isoformat(),
            "revision": self.revision.next(),
        }

    def _query(self, job_type: str):
        method, positional = QUERIES[job_type]

        async def handler(job) -> dict:
            payload = job.payload
            self._require(payload, positional)
            params = payload.get("params") or {}
            if not isinstance(params, dict):
                raise JobRejected("malformed_job", "params is not an object",
                                  params={"reason": "params должен быть объектом"})
            args = [payload[name] for name in positional]
            return await self.backend.call("battles", method, *args, params, timeout=self.query_timeout,
                                           request_id=job.id)

        return handler
