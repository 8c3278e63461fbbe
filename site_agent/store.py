"""What the agent remembers in Redis: nonces and job ids seen, and each job's outcome.

- ``tzr:agent:nonce:<nonce>`` lives for twice the job TTL (a job may be
  dated up to one TTL in the past or the future), so a captured job cannot
  be replayed while its timestamp is still accepted.
- ``tzr:agent:job:<id>`` contains ``{"state": "running" | "done", "fp":
  <fingerprint>, "ok", "result", "error"}``. A running marker expires after
  ``running_keep`` seconds, so a job whose agent died can run again (the
  services are idempotent by request id); an outcome is kept for
  ``result_keep`` seconds and is the answer to every repeat of the id.

The claim is one Lua script, so two agents (or two deliveries) racing on
one job id cannot both run it.
"""

import json
from dataclasses import dataclass

import redis.asyncio as aioredis


NONCE_KEY = "tzr:agent:nonce:{}"
JOB_KEY = "tzr:agent:job:{}"

# KEYS: job key, nonce key. ARGV: running marker, running keep, nonce keep.
_CLAIM = """
local job = redis.call('GET', KEYS[1])
if job then
    return {'repeat', job}
end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then
    return {'nonce_reused', ''}
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return {'new', ''}
"""


@dataclass(frozen=True)
class Claim:
    """``kind`` is ``new`` (run the job), ``repeat`` (see ``record``) or ``nonce_reused``."""

    kind: str
    record: dict | None = None


class JobStore:
    """Claims jobs and keeps their outcomes in Redis."""

    def __init__(self, url: str, job_ttl: int, running_keep: int, result_keep: int):
        self.redis = aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5,
                                             client_name="tzr-site-agent")
        self.job_ttl = job_ttl
        self.running_keep = running_keep
        self.result_keep = max(result_keep, job_ttl * 2)
        self._claim = self.redis.register_script(_CLAIM)

    async def claim(self, job_id: str, nonce: str, fingerprint: str) -> Claim:
        marker = json.dumps({"state": "running", "fp": fingerprint})
        kind, record = await self._claim(
            keys=[JOB_KEY.format(job_id), NONCE_KEY.format(nonce)],
            args=[marker, self.running_keep, self.job_ttl * 2],
        )
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "repeat":
            return Claim("repeat", json.loads(record))
        return Claim(kind)

    async def get(self, job_id: str) -> dict | None:
        raw = await self.redis.get(JOB_KEY.format(job_id))
        return None if raw is None else json.loads(raw)

    async def finish(self, job_id: str, fingerprint: str, ok: bool, result, error: str | None) -> None:
        record = {"state": "done", "fp": fingerprint, "ok": ok, "result": result, "error": error}
        await self.redis.set(JOB_KEY.format(job_id), json.dumps(record, ensure_ascii=False), ex=self.result_keep)

    async def forget(self, job_id: str) -> None:
        """Drop a running marker, so that the same job may run again (it never started)."""
        await self.redis.delete(JOB_KEY.format(job_id))

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def close(self) -> None:
        await self.redis.aclose()
