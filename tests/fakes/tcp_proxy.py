"""A TCP proxy on 127.0.0.1 that a test can cut, to play a backend going down.

Stopping the shared MariaDB or Redis server would disturb everything else
on the machine; pointing a service at this proxy instead and calling
``cut()`` gives the service the same view: established connections drop
and new ones are refused. ``restore()`` accepts connections again on the
same port.

The proxy runs in a child process with plain threads. Inside the test
process eventlet's monkey patch turns threads into green threads, and a
green thread waiting on a socket that another one closes is not always
woken, which leaves stale readers on reused descriptors.
"""

import argparse
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path


class TcpProxy:
    """Forwards connections from a free port to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = None
        self._process = None

    def start(self) -> "TcpProxy":
        if self.port is None:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__)), str(self.port), self.target[0], str(self.target[1])],
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the TCP proxy did not start listening on port {self.port}")

    def cut(self) -> None:
        """Drop every open connection and refuse new ones."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        self.start()

    def stop(self) -> None:
        self.cut()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for each in (source, sink):
            try:
                each.close()
            except OSError:
                pass


def _serve(port: int, target: tuple[str, int]) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    while True:
        client, _ = listener.accept()
        try:
            upstream = socket.create_connection(target, timeout=5)
        except OSError:
            client.close()
            continue
        upstream.settimeout(None)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Forward 127.0.0.1:PORT to HOST:TARGET_PORT.")
    parser.add_argument("port", type=int)
    parser.add_argument("host")
    parser.add_argument("target_port", type=int)
    arguments = parser.parse_args()
    _serve(arguments.port, (arguments.host, arguments.target_port))
