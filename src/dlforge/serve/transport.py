"""How requests reach the inference workers and answers come back: ZeroMQ sockets.

    HTTP process k ──PUSH──▶ ipc://DIR/w<i>  PULL, bound by worker i      requests
    worker i ──────PUSH──▶ ipc://DIR/h<k>  PULL, bound by HTTP process k  answers

LitServe hands requests to its workers through one queue that they all read.
A worker killed while reading a shared pipe queue leaves its lock held (every
later reader blocks) or a message half read; a manager queue costs a round trip
through one more process per request. Here nothing is shared but the sockets'
addresses and a table of worker pids: a ZeroMQ message arrives whole or not at
all, a killed process holds no lock, and a restarted worker binds the same
address, to which the HTTP processes reconnect by themselves.

The HTTP process chooses the worker of every request (the next live one, in
turn), so it knows which requests a worker held when it died: :meth:`watch`
answers those 503 at once, and any request unanswered past its deadline 504.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import multiprocessing as mp
import os
import pickle
import queue
import time
from pathlib import Path

from fastapi import HTTPException
from litserve.loops.simple_loops import BatchedLoop
from litserve.transport.base import MessageTransport
from litserve.utils import LitAPIStatus, PickleableHTTPException

log = logging.getLogger(__name__)

WATCH_SECONDS = 0.1  # how often the HTTP process checks its requests' workers
ANSWER_BACKLOG = 10000  # answers queued for one HTTP process before they are dropped
IDLE_WAIT = 1.0  # seconds an idle inference worker sleeps between looks at its socket


def _context(asynchronous: bool = False):
    """This process's ZeroMQ context (its own: pyzmq's shared instance may be the
    other kind, and a forked child must not use its parent's)."""
    import zmq
    import zmq.asyncio

    key = (os.getpid(), asynchronous)
    if key not in _CONTEXTS:
        _CONTEXTS[key] = zmq.asyncio.Context() if asynchronous else zmq.Context()
    return _CONTEXTS[key]


_CONTEXTS: dict[tuple[int, bool], object] = {}


def worker_alive(pid: int) -> bool:
    """Whether worker ``pid`` runs (a killed worker not yet reaped is a zombie: dead)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except OSError:  # no /proc: ask the kernel
        from dlforge.core.process import pid_alive

        return pid_alive(pid)


class WorkerQueues:
    """LitServe's request queue, one ZeroMQ socket per inference worker.

    ``put`` runs in the HTTP processes, ``get``/``get_nowait`` in the workers
    (each reads its own socket, found by LitServe's ``LITSERVE_WORKER_ID``).

    Args:
        folder: a private folder for the sockets (short: ipc paths are limited).
        workers: how many inference workers read requests.
        deadline: seconds a request may wait for its answer (then 504).
    """

    def __init__(self, folder: str | Path, workers: int, deadline: float):
        self.folder, self.workers, self.deadline = str(folder), workers, deadline
        self.pids = mp.get_context("spawn").Array("q", workers, lock=False)  # 0: not started
        self._local()

    def __getstate__(self) -> dict:
        return {"folder": self.folder, "workers": self.workers, "deadline": self.deadline,
                "pids": self.pids}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local()

    def _local(self) -> None:
        """What each process keeps for itself: sockets are never shared across a fork."""
        self._pid, self._push, self._pull = os.getpid(), {}, None
        self._turn = itertools.count()
        self._alive = [True] * self.workers
        self.assigned: dict[str, tuple[int, float]] = {}  # uid -> (worker, sent at)

    def address(self, worker: int) -> str:
        return f"ipc://{self.folder}/w{worker}"

    # -- the HTTP process -------------------------------------------------------------
    def put(self, item, block: bool = True, timeout: float | None = None) -> None:
        """Send ``(response_queue_id, uid, time, payload)`` to the next live worker.

        Raises:
            HTTPException: 503 when no worker can take it (all dead or full).
        """
        import zmq

        data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        start = next(self._turn)
        for step in range(self.workers):
            worker = (start + step) % self.workers
            if not self._running(worker):
                continue
            try:
                self._socket(worker).send(data, zmq.NOBLOCK)
            except zmq.Again:  # its queue is full
                continue
            if isinstance(item, tuple) and len(item) == 4:
                self.assigned[item[1]] = (worker, time.monotonic())
            return
        raise HTTPException(503, "no inference worker can take the request now (restarting "
                                 "or full); retry shortly", headers={"Retry-After": "1"})

    def _socket(self, worker: int):
        import zmq

        if self._pid != os.getpid():  # forked: the parent's sockets are not ours
            self._local()
        sock = self._push.get(worker)
        if sock is None:
            sock = _context().socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 1000)
            sock.connect(self.address(worker))
            self._push[worker] = sock
        return sock

    async def watch(self, response_buffer: dict) -> None:
        """Answer the requests of dead workers 503 and overdue ones 504 (runs forever)."""
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            try:
                self.check(response_buffer)
            except Exception:  # never let the watch end; the next round tries again
                log.exception("checking the inference workers failed")

    def check(self, response_buffer: dict) -> None:
        """One round of :meth:`watch`."""
        self._alive = [pid == 0 or worker_alive(pid) for pid in self.pids]
        now = time.monotonic()
        for uid, (worker, sent) in list(self.assigned.items()):
            item = response_buffer.get(uid)
            if item is None or item.event.is_set():
                del self.assigned[uid]
            elif not self._alive[worker]:
                _fail(item, 503, "the inference worker died while it held this request; "
                                 "retry (it is being restarted)")
                del self.assigned[uid]
            elif now - sent > self.deadline:
                _fail(item, 504, f"no answer within {self.deadline:g} s (request_timeout)")
                del self.assigned[uid]

    def _running(self, worker: int) -> bool:
        """Whether ``worker`` may be sent requests: not started yet (they wait for it) or
        alive. Looked up afresh: the watch's view is up to WATCH_SECONDS old, and a
        restarted worker would be refused for that long after readiness says it runs."""
        pid = self.pids[worker]
        return pid == 0 or worker_alive(pid)

    def processes(self) -> list[dict]:
        """Per worker: its pid (0 before it started) and whether it takes requests from
        this HTTP process (for readiness): it runs, and this process's socket to it has
        reconnected since it was (re)started, so that a request sent now is not refused."""
        import zmq

        return [{"pid": pid, "alive": pid != 0 and worker_alive(pid)
                 and bool(self._socket(worker).poll(0, zmq.POLLOUT))}
                for worker, pid in enumerate(self.pids)]

    # -- the inference worker -------------------------------------------------------
    def get(self, block: bool = True, timeout: float | None = None):
        sock = self._reader()
        # A wait below a millisecond (the end of a batch's window) looks without waiting.
        if block and not sock.poll(None if timeout is None else int(timeout * 1000)):
            raise queue.Empty
        return self.get_nowait()

    def wait(self, seconds: float) -> bool:
        """Whether a request is there to take within ``seconds`` (it is left there)."""
        return bool(self._reader().poll(math.ceil(seconds * 1000)))

    def get_nowait(self):
        import zmq

        try:
            return pickle.loads(self._reader().recv(zmq.NOBLOCK))
        except zmq.Again:
            raise queue.Empty from None

    def _reader(self):
        if self._pull is None or self._pid != os.getpid():
            import zmq

            self._local()
            worker = int(os.environ["LITSERVE_WORKER_ID"])
            self._pull = _context().socket(zmq.PULL)
            self._pull.setsockopt(zmq.LINGER, 0)
            self._pull.bind(self.address(worker))
            self.pids[worker] = os.getpid()
        return self._pull


class WaitingBatchedLoop(BatchedLoop):
    """LitServe's batched loop, asleep while no request comes.

    LitServe's collects a batch for ``batch_timeout`` seconds and then starts
    again, batch or not: an idle worker wakes every ``batch_timeout`` (a
    thousand times a second by default) and keeps a core busy. This one first
    waits for a request to be there (looking again every :data:`IDLE_WAIT`
    seconds), so that a batch's window opens with its first request.
    """

    def get_batch_requests(self, lit_api, request_queue: WorkerQueues, transport):
        request_queue.wait(IDLE_WAIT)
        return super().get_batch_requests(lit_api, request_queue, transport)


def request_loop(max_batch_size: int):
    """The inference workers' loop over :class:`WorkerQueues`: LitServe's own
    where requests are not batched (it waits on its queue a second at a time)."""
    return WaitingBatchedLoop() if max_batch_size > 1 else "auto"


def _fail(item, status: int, message: str) -> None:
    """Answer a waiting request with an HTTP error (as a worker's error answer would)."""
    error = PickleableHTTPException.from_exception(HTTPException(status, message))
    item.response = (pickle.dumps(error), LitAPIStatus.ERROR)
    item.event.set()


class AnswerTransport(MessageTransport):
    """LitServe's answer transport: each worker pushes to the HTTP process that asked."""

    def __init__(self, folder: str | Path):
        self.folder = str(folder)
        self._local()

    def __getstate__(self) -> dict:
        return {"folder": self.folder}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local()

    def _local(self) -> None:
        self._pid, self._push, self._pull = os.getpid(), {}, None

    def address(self, consumer: int) -> str:
        return f"ipc://{self.folder}/h{consumer}"

    def send(self, item, consumer_id: int) -> None:
        import zmq

        if self._pid != os.getpid():
            self._local()
        sock = self._push.get(consumer_id)
        if sock is None:
            sock = _context().socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 1000)
            sock.setsockopt(zmq.SNDHWM, ANSWER_BACKLOG)
            sock.connect(self.address(consumer_id))
            self._push[consumer_id] = sock
        try:
            sock.send(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL), zmq.NOBLOCK)
        except zmq.Again:  # that HTTP process is gone or hopelessly behind
            log.warning("answer dropped: HTTP process %d is not reading", consumer_id)

    async def areceive(self, consumer_id: int, timeout: float | None = None, block=True):
        if self._pull is None or self._pid != os.getpid():
            import zmq

            self._local()
            self._pull = _context(asynchronous=True).socket(zmq.PULL)
            self._pull.setsockopt(zmq.LINGER, 0)
            self._pull.bind(self.address(consumer_id))
        return pickle.loads(await self._pull.recv())

    def close(self, **kwargs) -> None:
        for sock in [*self._push.values(), *([self._pull] if self._pull else [])]:
            sock.close(linger=0)
        self._push, self._pull = {}, None
