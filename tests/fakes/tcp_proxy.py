"""A TCP proxy on 127.0.0.1 that a test can cut, to play a backend going down.

Stopping the shared MariaDB or Redis server would disturb everything else
on the machine; pointing a service at this proxy instead and calling
``cut()`` gives the service the same view: established connections drop
and new ones are refused. ``restore()`` accepts connections again.
"""

import socket
import threading


class TcpProxy:
    """Forwards connections from an ephemeral port to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = None
        self._listener = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._accepting = threading.Event()
        self._stopped = threading.Event()

    def start(self) -> "TcpProxy":
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port or 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._accepting.set()
        threading.Thread(target=self._accept_loop, args=(self._listener,), daemon=True).start()
        return self

    def _accept_loop(self, listener):
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except (OSError, EOFError):
            pass  # cut() closed the sockets under the pump, which ends it
        finally:
            for each in (source, sink):
                try:
                    each.close()
                except OSError:
                    pass

    def cut(self) -> None:
        """Drop every open connection and refuse new ones."""
        self._accepting.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for each in sockets:
            try:
                each.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            each.close()

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        self.start()

    def stop(self) -> None:
        self._stopped.set()
        self.cut()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
