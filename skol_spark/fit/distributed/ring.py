"""The ranks' collectives: a ring of TCP connections, in numpy.

Each rank connects to the next (``rank + 1 mod N``) and accepts the previous
one; every connection first sends the fit's random token, and a connection
without it is dropped. :meth:`Ring.allreduce` is the bandwidth-optimal ring
all-reduce: a reduce-scatter and an all-gather of ``N`` chunks, ``2 (N - 1)``
steps, each rank sending ``2 (N - 1) / N`` of the vector. Each chunk is
summed once, along the ring, and then copied to every rank, so all ranks
hold bitwise-equal sums: equal updates keep the weights equal without a
broadcast. Two ranks swap their whole vectors instead, in one exchange
(the same bytes, half the round trips): each adds the other's to its own,
and float addition is commutative, so both hold the same bits.
:meth:`Ring.allgather` passes every rank's block around the ring.

One thread does a rank's sends and receives: both sockets are non-blocking,
and an exchange sends and receives as the kernel is ready for each, with no
hand-off to another thread (nor its GIL switch). Received blocks land in one
buffer kept between calls, whose pages are already mapped.

A peer that goes away (its process failed or was killed) closes its
connections: the next send or receive raises :class:`PeerLostError` at once.

JAX's own multi-process runtime (``jax.distributed``) was not used: its
compilation cache is written by process 0 only, so every other rank
recompiled the step programs at every fit, and its start needs all ranks to
join a coordination service first.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["PeerLostError", "Ring", "free_port"]

_TOKEN_BYTES = 32


def free_port(host: str = "") -> int:
    """A port free on ``host`` now, for a rank to listen on."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class PeerLostError(RuntimeError):
    """A collective failed because another rank is gone (it failed, or was killed)."""


def _recv_exactly(connection: socket.socket, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = connection.recv_into(view[got:])
        if n == 0:
            raise PeerLostError("the previous rank closed its connection")
        got += n


def _wait(reading: socket.socket | None, writing: socket.socket | None) -> tuple[bool, bool]:
    """Block until ``reading`` has data or ``writing`` has room (either may be None): which of them is
    ready. ``poll`` where the platform has it (no limit on descriptor numbers), else ``select``."""
    if not hasattr(select, "poll"):
        readable, writable, _ = select.select([reading] if reading else [], [writing] if writing else [], [])
        return bool(readable), bool(writable)
    poller = select.poll()
    if reading is not None:
        poller.register(reading, select.POLLIN)
    if writing is not None:
        poller.register(writing, select.POLLOUT)  # an error or hang-up is reported on either
    ready = {fd for fd, _ in poller.poll()}
    return (reading is not None and reading.fileno() in ready), (writing is not None and writing.fileno() in ready)


class Ring:
    """This rank's place in the ring of ``len(peers)`` ranks (``peers``: every rank's ``host:port``)."""

    def __init__(self, rank: int, peers: list[str], token: str, timeout: float = 600.0):
        self.rank, self.size = rank, len(peers)
        self._sender: socket.socket | None = None
        self._buffer: np.ndarray | None = None
        self._receiver: socket.socket | None = None
        if self.size == 1:
            return
        secret = token.encode()[:_TOKEN_BYTES].ljust(_TOKEN_BYTES, b"\0")
        port = int(peers[rank].rsplit(":", 1)[1])
        server = socket.create_server(("", port), reuse_port=False)
        server.settimeout(timeout)
        accepted: list[socket.socket] = []
        failures: list[BaseException] = []

        def accept() -> None:
            try:
                while not accepted:
                    connection, _ = server.accept()
                    connection.settimeout(timeout)
                    received = bytearray(_TOKEN_BYTES)
                    try:
                        _recv_exactly(connection, memoryview(received))
                    except (OSError, PeerLostError):
                        connection.close()
                        continue
                    if bytes(received) != secret:
                        connection.close()  # not one of this fit's ranks
                        continue
                    connection.settimeout(None)
                    accepted.append(connection)
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        acceptor = threading.Thread(target=accept, daemon=True, name="ring-accept")
        acceptor.start()
        try:
            self._sender = self._connect(peers[(rank + 1) % self.size], secret, timeout)
            acceptor.join(timeout)
        finally:
            server.close()
        if failures or not accepted:
            raise PeerLostError(f"rank {(rank - 1) % self.size} did not connect ({failures[:1] or 'timed out'})")
        self._receiver = accepted[0]
        for s in (self._sender, self._receiver):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)  # one thread sends and receives: see _exchange

    @staticmethod
    def _connect(address: str, secret: bytes, timeout: float) -> socket.socket:
        host, port = address.rsplit(":", 1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                connection = socket.create_connection((host, int(port)), timeout=10)
                connection.sendall(secret)
                connection.settimeout(None)
                return connection
            except OSError as exc:  # the next rank is not listening yet
                if time.monotonic() > deadline:
                    raise PeerLostError(f"could not connect to the next rank at {address} ({exc})") from exc
                time.sleep(0.05)

    def _exchange(self, outgoing: memoryview, incoming: memoryview, meanwhile: Callable[[], Any] | None = None) -> None:
        """Send ``outgoing`` to the next rank while receiving ``incoming`` from the previous one, in this
        thread: non-blocking sends and receives, each as the kernel is ready for it. ``meanwhile`` runs
        once the kernel holds as much of ``outgoing`` as its buffers take (on loopback, usually all)."""
        sent = self._send(outgoing, 0)
        if meanwhile is not None:
            meanwhile()
        got = 0
        while sent < len(outgoing) or got < len(incoming):
            readable, writable = _wait(self._receiver if got < len(incoming) else None,
                                       self._sender if sent < len(outgoing) else None)
            if readable:
                got = self._receive(incoming, got)
            if writable:
                sent = self._send(outgoing, sent)

    def _send(self, outgoing: memoryview, sent: int) -> int:
        """Send what the kernel takes now of ``outgoing[sent:]``; the new count sent."""
        try:
            while sent < len(outgoing):
                sent += self._sender.send(outgoing[sent:])
        except BlockingIOError:
            pass
        except OSError as exc:
            raise PeerLostError(f"sending to the next rank failed ({exc})") from exc
        return sent

    def _receive(self, incoming: memoryview, got: int) -> int:
        """Receive what has arrived into ``incoming[got:]``; the new count received."""
        try:
            while got < len(incoming):
                n = self._receiver.recv_into(incoming[got:])
                if n == 0:
                    raise PeerLostError("the previous rank closed its connection")
                got += n
        except BlockingIOError:
            pass
        except OSError as exc:
            raise PeerLostError(f"receiving from the previous rank failed ({exc})") from exc
        return got

    def allreduce(self, values: np.ndarray, meanwhile: Callable[[], Any] | None = None) -> np.ndarray:
        """The sum over ranks of each rank's 1-D float32 ``values`` (bitwise equal on every rank).

        ``meanwhile`` (host work of this rank's own) runs while the first exchange is in flight: time
        this rank would otherwise spend waiting for the slowest peer's data.
        """
        values = np.ascontiguousarray(values, dtype=np.float32).ravel()
        n = self.size
        if n == 1:
            if meanwhile is not None:
                meanwhile()
            return values.copy()
        if n == 2:  # a + b == b + a bit for bit
            other = self._scratch(len(values))
            self._exchange(memoryview(values).cast("B"), memoryview(other).cast("B"), meanwhile)
            return values + other
        out = values.copy()
        bounds = np.linspace(0, len(out), n + 1).astype(np.int64)
        chunk = [out[bounds[i] : bounds[i + 1]] for i in range(n)]
        incoming = self._scratch(int(np.diff(bounds).max()))
        for s in range(n - 1):  # reduce-scatter: rank r ends with the whole sum of chunk r + 1
            send, recv = chunk[(self.rank - s) % n], chunk[(self.rank - s - 1) % n]
            buffer = incoming[: len(recv)]
            self._exchange(memoryview(send).cast("B"), memoryview(buffer).cast("B"), meanwhile if s == 0 else None)
            recv += buffer
        for s in range(n - 1):  # all-gather: pass the summed chunks on
            send, recv = chunk[(self.rank + 1 - s) % n], chunk[(self.rank - s) % n]
            self._exchange(memoryview(send).cast("B"), memoryview(recv).cast("B"))
        return out

    def _scratch(self, size: int) -> np.ndarray:
        """A float32 receive buffer of ``size``, kept between calls: fresh pages would fault as they fill."""
        if self._buffer is None or len(self._buffer) < size:
            self._buffer = np.empty(size, np.float32)
        return self._buffer[:size]

    def allgather(self, values: np.ndarray) -> np.ndarray:
        """Every rank's ``values`` (same shape and dtype on every rank), stacked by rank."""
        values = np.ascontiguousarray(values)
        out = np.empty((self.size, *values.shape), values.dtype)
        out[self.rank] = values
        for s in range(self.size - 1):
            send, recv = out[(self.rank - s) % self.size], out[(self.rank - s - 1) % self.size]
            self._exchange(memoryview(send).cast("B"), memoryview(recv).cast("B"))
        return out

    def close(self) -> None:
        for s in (self._sender, self._receiver):
            if s is not None:
                s.close()
