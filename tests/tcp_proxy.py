"""A small TCP proxy for link tests: node -> proxy -> broker, with faults injected in between.

Modes (switchable at any time, they apply to every open and future connection):

- ``pass``: bytes flow both ways (optionally each chunk held back ``delay_s``: a slow broker
  or a congested link; order is kept, nothing is lost).
- ``blackhole``: connections stay open but every byte is silently dropped in both directions,
  new connections are accepted and then ignored: a half-open link (a dead NAT entry, a pulled
  WAN cable, a broker host that froze). Neither side gets a FIN or an RST.
- ``refuse``: the listener closes new connections at once and open ones are reset: a broker
  that is down or unreachable.

``kill_all()`` closes every open connection (both ends), like a broker restart seen from the
node. Counters (`accepted`, `bytes_up`, `bytes_down`, `dropped`) let tests check what happened.
"""

from __future__ import annotations

import heapq
import selectors
import socket
import struct
import threading
import time


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1", listen_port: int = 0) -> None:
        self.target = (target_host, target_port)
        self._lsock = socket.socket()
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind(("127.0.0.1", listen_port))
        self._lsock.listen(16)
        self._lsock.setblocking(False)
        self.port = self._lsock.getsockname()[1]
        self.mode = "pass"
        self.delay_s = 0.0
        self.accepted = 0
        self.bytes_up = 0  # client -> target
        self.bytes_down = 0  # target -> client
        self.dropped = 0  # bytes swallowed by the blackhole
        self.connect_times: list[float] = []  # time.monotonic() of each connection made upstream
        self._lock = threading.Lock()
        self._pairs: dict[socket.socket, socket.socket] = {}  # each end -> the other end
        self._client_ends: set[socket.socket] = set()
        self._pending: list[tuple[float, int, socket.socket, bytes]] = []  # delayed chunks
        self._n = 0
        self._calls: list = []  # functions to run on the proxy thread
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._lsock, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name=f"tcp-proxy-{self.port}", daemon=True)
        self._thread.start()

    # -- control ---------------------------------------------------------------------------

    def set_mode(self, mode: str, delay_s: float | None = None) -> None:
        if mode not in ("pass", "blackhole", "refuse"):
            raise ValueError(mode)
        with self._lock:
            self.mode = mode
            if delay_s is not None:
                self.delay_s = delay_s
        if mode == "refuse":
            self._call(self._reset_all)
        self._wake()

    def kill_all(self) -> None:
        """Close every proxied connection (both ends): the node sees a broker restart."""
        self._call(self._close_all)

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._client_ends)

    def close(self) -> None:
        self._stop.set()
        self._wake()
        self._thread.join(5)
        self._close_all()
        self._sel.close()
        self._lsock.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals (proxy thread) ----------------------------------------------------------

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _call(self, fn) -> None:
        done = threading.Event()
        with self._lock:
            self._calls.append((fn, done))
        self._wake()
        done.wait(5)

    def _close_all(self) -> None:
        with self._lock:
            socks = list(self._pairs)
            self._pairs.clear()
            self._client_ends.clear()
            self._pending.clear()
        for s in socks:
            self._drop_sock(s)

    def _reset_all(self) -> None:
        with self._lock:
            socks = list(self._pairs)
        for s in socks:
            try:  # RST instead of FIN: the connection is refused, not politely closed
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self._close_all()

    def _drop_sock(self, s: socket.socket) -> None:
        try:
            self._sel.unregister(s)
        except (KeyError, ValueError):
            pass
        try:
            s.close()
        except OSError:
            pass

    def _close_pair(self, s: socket.socket) -> None:
        with self._lock:
            other = self._pairs.pop(s, None)
            if other is not None:
                self._pairs.pop(other, None)
            self._client_ends.discard(s)
            if other is not None:
                self._client_ends.discard(other)
        self._drop_sock(s)
        if other is not None:
            self._drop_sock(other)

    def _accept(self) -> None:
        try:
            c, _ = self._lsock.accept()
        except OSError:
            return
        with self._lock:
            mode = self.mode
        if mode == "refuse":
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
            return
        self.accepted += 1
        try:
            t = socket.create_connection(self.target, timeout=2)
        except OSError:
            c.close()  # the broker behind us is down: the node sees a closed connection
            return
        self.connect_times.append(time.monotonic())
        for s in (c, t):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sel.register(s, selectors.EVENT_READ)
        with self._lock:
            self._pairs[c] = t
            self._pairs[t] = c
            self._client_ends.add(c)

    def _forward(self, src: socket.socket) -> None:
        try:
            data = src.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close_pair(src)
            return
        with self._lock:
            dst = self._pairs.get(src)
            mode, delay = self.mode, self.delay_s
            up = src in self._client_ends
        if dst is None:
            return
        if mode == "blackhole":
            self.dropped += len(data)
            return
        if up:
            self.bytes_up += len(data)
        else:
            self.bytes_down += len(data)
        if delay > 0:
            with self._lock:
                self._n += 1
                # keep order per direction: never schedule before an earlier chunk
                heapq.heappush(self._pending, (time.monotonic() + delay, self._n, dst, data))
        else:
            self._send(dst, data)

    def _send(self, dst: socket.socket, data: bytes) -> None:
        try:
            dst.setblocking(True)
            dst.settimeout(5)
            dst.sendall(data)
            dst.setblocking(False)
        except OSError:
            self._close_pair(dst)

    def _run(self) -> None:
        while not self._stop.is_set():
            timeout = 0.2
            with self._lock:
                if self._pending:
                    timeout = max(0.0, min(timeout, self._pending[0][0] - time.monotonic()))
            for key, _ in self._sel.select(timeout):
                s = key.fileobj
                if s is self._lsock:
                    self._accept()
                elif s is self._wake_r:
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
                else:
                    self._forward(s)
            with self._lock:
                calls, self._calls = self._calls, []
            for fn, done in calls:
                fn()
                done.set()
            now = time.monotonic()
            while True:
                with self._lock:
                    if not self._pending or self._pending[0][0] > now:
                        break
                    _, _, dst, data = heapq.heappop(self._pending)
                    alive = dst in self._pairs
                    blackholed = self.mode == "blackhole"
                if alive and not blackholed:
                    self._send(dst, data)
