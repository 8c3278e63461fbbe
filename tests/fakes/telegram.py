"""A fake Telegram Bot API server on 127.0.0.1 that serves ``getChatMember``.

The registration service checks group membership with
``GET <base_url>/bot<token>/getChatMember?chat_id=<group>&user_id=<id>``.
Tests point its base URL at :attr:`FakeTelegram.base_url` and set up the
group, its members and the failure to simulate::

    with FakeTelegram() as telegram:
        telegram.add_member(555000111, "restricted", is_member=False)
        telegram.retry_after = 3          # every request: 429, retry after 3 s
        telegram.down = "close"           # every request: connection closed, no reply
        ...
        assert telegram.call_count == 1

It is ``http.server``'s threading server, so under eventlet's monkey patch
(as in this test suite) its threads are green threads and it works in the
process under test. Replies have the Bot API's shape:
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": ...,
"description": ...}``.

NOTE: only the descriptions "Unauthorized", "Not Found", "Bad Request: user
not found", "Bad Request: chat not found" and "Too Many Requests: retry
after N" follow replies of the real API. The texts for a missing or
malformed parameter are approximations.
"""

import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from logging import getLogger
from urllib.parse import parse_qsl, urlsplit


_log = getLogger(__name__)

DEFAULT_TOKEN = "123456789:TEST-fake-telegram-token"
DEFAULT_CHAT_ID = -1001234567890
STATUSES = ("creator", "administrator", "member", "restricted", "left", "kicked")
#: Values of :attr:`FakeTelegram.down`: close each connection without a reply,
#: or respond with 502 Bad Gateway as a proxy in front of the API would.
DOWN_MODES = ("close", "bad_gateway")
_PATH = re.compile(r"^/bot(?P<token>[^/]+)/(?P<method>[A-Za-z]+)$")
# Seconds between checks for shutdown in the server loop.
_POLL_INTERVAL = 0.05


@dataclass(frozen=True)
class Call:
    """One request that reached the fake: the method name and its parameters."""

    method: str
    params: dict
    token: str


class FakeTelegram:
    """The fake server and its per-test settings.

    ``token`` is the only bot token accepted, and ``chat_id`` the only group
    (compared as text, so ``-100…`` and ``"-100…"`` match). Every reply
    waits ``delay`` seconds. While ``retry_after`` is a number of seconds,
    every request gets 429. While ``down`` is ``"close"`` or
    ``"bad_gateway"``, the server looks down. ``calls`` lists every request
    received, including rejected ones.
    """

    def __init__(self, token: str = DEFAULT_TOKEN, chat_id: int | str = DEFAULT_CHAT_ID):
        self.token = token
        self.chat_id = chat_id
        self.members: dict[int, dict] = {}
        self.delay = 0.0
        self.retry_after: int | None = None
        self._down: str | None = None
        self.calls: list[Call] = []
        self._server = None
        self._thread = None
        self._stopping = threading.Event()

    @property
    def down(self) -> str | None:
        """None when up, else one of :data:`DOWN_MODES`."""
        return self._down

    @down.setter
    def down(self, mode: str | None) -> None:
        if mode is not None and mode not in DOWN_MODES:
            raise ValueError(f"down must be None or one of {DOWN_MODES}, got {mode!r}")
        self._down = mode

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash."""
        if self._server is None:
            raise RuntimeError("the fake Telegram server is not running: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def call_count(self) -> int:
        return len(self.calls)

    def add_member(self, user_id: int, status: str = "member", is_member: bool = True) -> None:
        """Put ``user_id`` in the group with ``status``; ``is_member`` applies to ``restricted`` only."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        self.members[int(user_id)] = {"status": status, "is_member": is_member}

    def start(self) -> "FakeTelegram":
        """Listen on a free port of 127.0.0.1 and serve in a (green) thread."""
        self._stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name="fake-telegram",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut delayed replies short and close the listening socket."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> "FakeTelegram":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def reply(self, method: str, params: dict, token: str) -> tuple[int, dict]:
        """Return the HTTP status and JSON body the Bot API would send for this request."""
        if token != self.token:
            return _error(401, "Unauthorized")
        if self.retry_after is not None:
            status, body = _error(429, f"Too Many Requests: retry after {self.retry_after}")
            body["parameters"] = {"retry_after": self.retry_after}
            return status, body
        if method.lower() != "getchatmember":
            return _error(404, "Not Found")
        return self._get_chat_member(params)

    def _get_chat_member(self, params: dict) -> tuple[int, dict]:
        chat_id = params.get("chat_id", "")
        if not chat_id:
            return _error(400, "Bad Request: chat_id is empty")
        if str(chat_id) != str(self.chat_id):
            return _error(400, "Bad Request: chat not found")
        try:
            user_id = int(params.get("user_id", ""))
        except ValueError:
            return _error(400, "Bad Request: invalid user_id specified")
        member = self.members.get(user_id)
        if member is None:
            return _error(400, "Bad Request: user not found")

        result = {
            "user": {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"},
            "status": member["status"],
        }
        if member["status"] == "restricted":
            result["is_member"] = member["is_member"]
            result["until_date"] = 0
        return 200, {"ok": True, "result": result}


def _error(status: int, description: str) -> tuple[int, dict]:
    return status, {"ok": False, "error_code": status, "description": description}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeTelegram):
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request, client_address):
        # A client that gave up during a delay leaves a broken pipe behind;
        # that is expected in tests and not worth a traceback on stderr.
        _log.debug("fake Telegram: request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeTelegram/1.0"

    def do_GET(self):
        self._serve(body=b"")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self._serve(body=self.rfile.read(length))

    def _serve(self, body: bytes) -> None:
        fake: FakeTelegram = self.server.fake
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query))
        params.update(self._body_params(body))
        match = _PATH.match(url.path)
        token = match["token"] if match else ""
        method = match["method"] if match else ""
        fake.calls.append(Call(method=method, params=params, token=token))

        if fake.delay:
            # Wait on the stop event, so that stop() cuts a long delay short.
            fake._stopping.wait(fake.delay)
        if fake.down == "close":
            self.close_connection = True
            return
        if fake.down == "bad_gateway":
            self._send(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
            return
        if match is None:
            status, reply = _error(404, "Not Found")
        else:
            status, reply = fake.reply(method, params, token)
        self._send(status, json.dumps(reply).encode("utf-8"), "application/json")

    def _body_params(self, body: bytes) -> dict:
        if not body:
            return {}
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            try:
                decoded = json.loads(body)
            except ValueError:
                return {}
            return {key: str(value) for key, value in decoded.items()} if isinstance(decoded, dict) else {}
        return dict(parse_qsl(body.decode("utf-8", "replace")))

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):
        _log.debug("fake Telegram: " + format, *args)
