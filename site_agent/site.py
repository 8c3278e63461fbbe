"""``tzr-site``: a reference website for tests and the demo.

It does what the real website does on its side of the agent's socket:

- serves ``ws://127.0.0.1:8765/ws/pull``, accepting only a bearer JWT that
  it issued itself (HS256 with ``TZR_SITE_JWT_SECRET``, audience
  ``tzr-site-agent``; ``tzr-site token`` prints one);
- signs and encrypts jobs as in the wire format of :mod:`site_agent.crypto`
  and checks every result: signature, age and a nonce not seen before;
- keeps unanswered jobs in a journal file (``--journal``) and sends them
  again, with a fresh ``ts`` and ``nonce``, to the next agent that
  connects, as a site restarted in the middle of a job would.

Jobs are submitted on a control port on loopback: one JSON object per line
in, one per line out. ``tzr-site job`` is its client.

- ``{"op": "job", "job_type", "payload", "password"?, "id"?, "wait"?}``
  builds, signs and sends a job (``password`` is encrypted into
  ``payload.password_encrypted``) and waits up to ``wait`` seconds for its
  result;
- ``{"op": "send", "frame", "id"?, "wait"?}`` sends a raw frame as it is
  (for tests of malformed, tampered and oversized frames);
- ``{"op": "result", "id", "wait"?}`` waits for the result of a job sent
  earlier;
- ``{"op": "state"}`` returns whether an agent is connected, and the count of connections and rejected handshakes.

Answers are ``{"id", "result", "verified", "problem"}``, with ``result``
null when none came in time, and ``problem`` saying what failed in the check.
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
import uuid
from http import HTTPStatus
from pathlib import Path

import jwt
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from site_agent import crypto
from site_agent.config import SettingsError, read_secret


_log = logging.getLogger("site_agent.site")

JWT_SECRET = "TZR_SITE_JWT_SECRET"
AUDIENCE = "tzr-site-agent"
WS_PATH = "/ws/pull"
DEFAULT_PORT = 8765
DEFAULT_CONTROL_PORT = 8766
DEFAULT_TTL = 45
# Bytes of one control request: room for the oversized frames that tests send.
CONTROL_LINE_LIMIT = 16 * 1024 * 1024


def issue_token(secret: str, lifetime: float, subject: str = "agent", now: float | None = None) -> str:
    """Return an HS256 JWT for the agent, valid for ``lifetime`` seconds."""
    now = time.time() if now is None else now
    claims = {"sub": subject, "aud": AUDIENCE, "iat": int(now), "exp": int(now + lifetime)}
    return jwt.encode(claims, secret, algorithm="HS256")


def build_job(job_type: str, payload: dict, hmac_key: bytes, job_id: str | None = None,
              now: float | None = None) -> dict:
    """Return a signed job with a fresh nonce."""
    job = {
        "type": "job",
        "id": job_id or str(uuid.uuid4()),
        "job_type": job_type,
        "payload": payload,
        "ts": int(time.time() if now is None else now),
        "nonce": str(uuid.uuid4()),
    }
    job["sig"] = crypto.sign(job, crypto.JOB_SIGNED_FIELDS, hmac_key)
    return job


class ReferenceSite:
    """The WebSocket endpoint, the result checks and the journal of unanswered jobs."""

    def __init__(self, hmac_key: bytes, aes_key: bytes, jwt_secret: str, ttl: int = DEFAULT_TTL,
                 journal: Path | None = None):
        self.hmac_key = hmac_key
        self.aes_key = aes_key
        self.jwt_secret = jwt_secret
        self.ttl = ttl
        self.journal = Path(journal) if journal else None
        self.pending: dict[str, dict] = self._load_journal()
        self.results: dict[str, dict] = {}
        self.nonces: dict[str, float] = {}
        self.connection = None
        self.connections = 0
        self.refused = 0
        self._arrived = asyncio.Condition()

    # -- journal

    def _load_journal(self) -> dict:
        if self.journal is None or not self.journal.exists():
            return {}
        return json.loads(self.journal.read_text(encoding="utf-8"))

    def _save_journal(self) -> None:
        if self.journal is None:
            return
        temporary = self.journal.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.pending, ensure_ascii=False), encoding="utf-8")
        os.replace(temporary, self.journal)

    # -- the agent's socket

    def check_request(self, connection, request):
        """Refuse a handshake on another path or without a valid bearer token."""
        if request.path != WS_PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            if scheme != "Bearer" or not token:
                raise jwt.InvalidTokenError("no bearer token")
            jwt.decode(token, self.jwt_secret, algorithms=["HS256"], audience=AUDIENCE)
        except jwt.InvalidTokenError as error:
            self.refused += 1
            _log.warning("rejected an agent's handshake: %s", type(error).__name__)
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid token\n")
        return None

    async def handle(self, connection) -> None:
        self.connection = connection
        self.connections += 1
        _log.info("agent connected from %s", connection.remote_address)
        for job_id, job in list(self.pending.items()):
            _log.info("job %s: sending again after a restart", job_id)
            await self._send_job(job_id, job["job_type"], job["payload"])
        try:
            async for frame in connection:
                await self._receive(frame)
        except ConnectionClosed:
            pass
        finally:
            if self.connection is connection:
                self.connection = None
            _log.info("agent disconnected")

    async def _receive(self, frame) -> None:
        try:
            message = json.loads(frame)
        except ValueError:
            _log.error("the agent sent a frame that is not JSON")
            return
        problem = self.check_result(message)
        job_id = message.get("id") if isinstance(message, dict) else None
        record = {"result": message, "verified": problem is None, "problem": problem}
        if problem:
            _log.error("job %s: result failed the check: %s", job_id, problem)
        else:
            _log.info("job %s: result ok=%s", job_id, message.get("ok"))
        if isinstance(job_id, str):
            self.results[job_id] = record
            if problem is None and self.pending.pop(job_id, None) is not None:
                self._save_journal()
        async with self._arrived:
            self._arrived.notify_all()

    def check_result(self, message) -> str | None:
        """Return what is wrong with a result, or None."""
        if not isinstance(message, dict) or message.get("type") != "result":
            return "not a result"
        if not crypto.signature_matches(message, crypto.RESULT_SIGNED_FIELDS, self.hmac_key):
            return "bad signature"
        ts = message.get("ts")
        if isinstance(ts, bool) or not isinstance(ts, int) or abs(time.time() - ts) > self.ttl:
            return "stale or missing ts"
        nonce = message.get("nonce")
        now = time.monotonic()
        self.nonces = {seen: at for seen, at in self.nonces.items() if now - at < 2 * self.ttl}
        if not isinstance(nonce, str) or nonce in self.nonces:
            return "nonce reused"
        self.nonces[nonce] = now
        return None

    # -- jobs

    async def _send_job(self, job_id: str, job_type: str, payload: dict) -> bool:
        frame = json.dumps(build_job(job_type, payload, self.hmac_key, job_id), ensure_ascii=False)
        return await self.send_frame(frame)

    async def send_frame(self, frame: str) -> bool:
        connection = self.connection
        if connection is None:
            return False
        try:
            await connection.send(frame)
            return True
        except ConnectionClosed:
            return False

    async def submit(self, job_type: str, payload: dict, password: str | None = None,
                     job_id: str | None = None) -> str:
        """Record a job in the journal and send it when an agent is connected; return its id."""
        job_id = job_id or str(uuid.uuid4())
        payload = dict(payload)
        if password is not None:
            payload["password_encrypted"] = crypto.encrypt(password, self.aes_key)
        self.pending[job_id] = {"job_type": job_type, "payload": payload}
        self._save_journal()
        self.results.pop(job_id, None)
        await self._send_job(job_id, job_type, payload)
        return job_id

    async def wait_result(self, job_id: str, wait: float) -> dict | None:
        deadline = time.monotonic() + wait
        async with self._arrived:
            while job_id not in self.results:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except asyncio.TimeoutError:
                    return None
        return self.results[job_id]

    # -- control port

    async def control(self, reader, writer) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    answer = await self._command(request)
                except (ValueError, KeyError, TypeError) as error:
                    answer = {"error": f"bad control request: {error}"}
                writer.write(json.dumps(answer, ensure_ascii=False).encode("utf-8") + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _command(self, request: dict) -> dict:
        op = request["op"]
        wait = float(request.get("wait", 0))
        if op == "state":
            return {"connected": self.connection is not None, "connections": self.connections,
                    "refused": self.refused, "pending": sorted(self.pending)}
        if op == "job":
            job_id = await self.submit(request["job_type"], request.get("payload") or {},
                                       request.get("password"), request.get("id"))
        elif op == "send":
            job_id = request.get("id")
            self.results.pop(job_id, None)
            sent = await self.send_frame(request["frame"])
            if not sent:
                return {"id": job_id, "sent": False, "result": None, "verified": False, "problem": "not sent"}
            if job_id is None:
                return {"id": None, "sent": True, "result": None, "verified": False, "problem": None}
        elif op == "result":
            job_id = request["id"]
        else:
            return {"error": f"unknown op {op!r}"}
        record = await self.wait_result(job_id, wait) if wait > 0 else self.results.get(job_id)
        if record is None:
            return {"id": job_id, "result": None, "verified": False, "problem": "no result"}
        return {"id": job_id, **record}


def _keys() -> tuple[bytes, bytes, str]:
    return (crypto.hmac_key(read_secret("TZR_SITE_HMAC_SECRET")), crypto.aes_key(read_secret("TZR_SITE_AES_KEY")),
            read_secret(JWT_SECRET))


async def _serve(arguments) -> None:
    hmac_key, aes_key, jwt_secret = _keys()
    site = ReferenceSite(hmac_key, aes_key, jwt_secret, ttl=arguments.ttl, journal=arguments.journal)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    control = await asyncio.start_server(site.control, arguments.host, arguments.control_port,
                                         limit=CONTROL_LINE_LIMIT)
    async with serve(site.handle, arguments.host, arguments.port, process_request=site.check_request,
                     max_size=arguments.max_frame, ping_interval=20, ping_timeout=20):
        _log.info("serving ws://%s:%s%s, control on %s:%s", arguments.host, arguments.port, WS_PATH,
                  arguments.host, arguments.control_port)
        print(f"ready ws://{arguments.host}:{arguments.port}{WS_PATH} control {arguments.control_port}", flush=True)
        async with control:
            await stop.wait()


def _control_request(port: int, request: dict, timeout: float) -> dict:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(json.dumps(request, ensure_ascii=False).encode("utf-8") + b"\n")
        buffer = b""
        while not buffer.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
    return json.loads(buffer)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tzr-site", description="A reference website for the site agent.")
    commands = parser.add_subparsers(dest="command", required=True)

    server = commands.add_parser("serve", help="serve the agent's socket and the control port")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=DEFAULT_PORT)
    server.add_argument("--control-port", type=int, default=DEFAULT_CONTROL_PORT)
    server.add_argument("--journal", type=Path, help="file that keeps unanswered jobs across restarts")
    server.add_argument("--ttl", type=int, default=DEFAULT_TTL, help="seconds a result may be old")
    server.add_argument("--max-frame", type=int, default=1024 * 1024)

    token = commands.add_parser("token", help=f"print a JWT for the agent (signed with {JWT_SECRET})")
    token.add_argument("--lifetime", type=float, default=3600.0, help="seconds (default 3600)")
    token.add_argument("--subject", default="agent")

    job = commands.add_parser("job", help="send a job through the running site and print its result")
    job.add_argument("job_type")
    job.add_argument("--payload", default="{}", help="the payload as JSON")
    job.add_argument("--password-env", metavar="VAR",
                     help="encrypt the value of this environment variable into payload.password_encrypted")
    job.add_argument("--id", help="the job id (default: a new UUID)")
    job.add_argument("--wait", type=float, default=70.0)
    job.add_argument("--control-port", type=int, default=DEFAULT_CONTROL_PORT)

    arguments = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        if arguments.command == "serve":
            asyncio.run(_serve(arguments))
            return 0
        if arguments.command == "token":
            print(issue_token(read_secret(JWT_SECRET), arguments.lifetime, arguments.subject))
            return 0
        request = {"op": "job", "job_type": arguments.job_type, "payload": json.loads(arguments.payload),
                   "wait": arguments.wait}
        if arguments.id:
            request["id"] = arguments.id
        if arguments.password_env:
            request["password"] = os.environ[arguments.password_env]
        answer = _control_request(arguments.control_port, request, arguments.wait + 5)
        print(json.dumps(answer, ensure_ascii=False, indent=2))
        return 0 if answer.get("verified") and answer["result"].get("ok") else 1
    except (SettingsError, ValueError, KeyError, OSError) as error:
        print(f"tzr-site: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
