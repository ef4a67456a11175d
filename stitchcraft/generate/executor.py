"""Where the generate stage's work runs: engine calls in lanes, CPU work in a pool.

The render describes work; an `Executor` runs it. The in-process executor (the
default) gives work *lanes*: a priority queue served by as many worker threads as
calls may be in flight. Every engine that needs the GPU shares one lane, one call at a
time (one device, and pipelines are not loaded side by side); any other engine has a
lane of its own, as wide as its ``Engine.CONCURRENCY`` (1 for the CPU engines, many
for a hosted API), so one engine never waits for another.
Takes an engine yields are handed at once to a small CPU pool, where they are stored
and scored while the engine makes the next one; the pool serves its work by the same
priorities as the engine calls, so a chained take is scored before independent ones.
A bounded number of takes held in memory may wait for the CPU pool (`backlog`): past
it the engine waits too, so memory stays bounded whatever the speeds (a take that is
a file, a download or footage, holds next to nothing and never waits). Takes waiting
for room are let in by the same priorities, so that when many land at once (a level of
chains in flight together), each chain's are stored and chosen in turn, not all
chains' a little at a time.

Priorities are tuples, lowest first: the select stage puts chained segments (the
critical path) ahead of independent ones, and earlier segments ahead of later ones.
A cluster executor plugs in behind the same five methods (`executor_for` names them;
`stitchcraft.generate.ray_executor` spreads engine calls over a Ray cluster).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ..engines.base import Engine, SegmentRequest, Take, TakeFailure

T = TypeVar("T")
Q = TypeVar("Q")
Priority = tuple[int, ...]


class Executor(Protocol):
    """Runs engine calls and CPU work for a render."""

    def generate(self, engine: Engine, request: SegmentRequest, priority: Priority,
                 on_take: Callable[[Take | TakeFailure], Future[Any]]) -> Future[int]:
        """Queues one engine call. `on_take` gets each take as the engine yields it (on
        a worker thread) and returns the future of the work that takes it out of
        memory (storing it); the engine pauses while too many such works are pending.
        The returned future resolves to the number of takes made, or carries the
        engine's exception."""
        ...

    def cpu(self, fn: Callable[..., T], *args: Any, priority: Priority = (9,)) -> Future[T]:
        """Runs `fn(*args)` on a CPU worker, lowest `priority` first."""
        ...

    def stats(self) -> dict[str, float]:
        """Busy seconds so far, by kind of work (``generate``, ``cpu``)."""
        ...

    def quiet(self, timeout: float) -> bool:
        """Waits until no CPU work is queued or running, at most `timeout` seconds;
        whether it is so. Work that can wait (rendering pieces of the cut ahead) calls
        it before it starts, so that it never holds back the takes being stored and
        scored."""
        ...

    def close(self) -> None:
        """Stops the workers once their queues are done; pending engine calls are
        abandoned with `cancel_futures` semantics."""
        ...


@dataclass(order=True)
class _Job:
    priority: Priority
    order: int
    engine: Engine | None = field(compare=False)
    request: SegmentRequest | None = field(compare=False)  # None: stop serving
    on_take: Callable[[Take | TakeFailure], Future[Any]] | None = field(compare=False)
    future: Future[int] | None = field(compare=False)


_STOP_PRIORITY: Priority = (1 << 62,)


class _Lane:
    """A queue of engine calls and the threads that serve it."""

    def __init__(self, name: str, width: int, executor: LocalExecutor):
        self.executor = executor
        self.jobs: queue.PriorityQueue[_Job] = queue.PriorityQueue()
        self.width = width
        self.threads = [threading.Thread(target=self._serve, name=f"lane-{name}-{i}", daemon=True)
                        for i in range(width)]
        for thread in self.threads:
            thread.start()

    def _serve(self) -> None:
        while True:
            job = self.jobs.get()
            if job.engine is None or job.request is None or job.future is None or job.on_take is None:
                return
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                made = 0
                for take in self._timed(job.engine.generate(job.request)):
                    # Only pixels in memory count against the backlog: a take that is a
                    # file (a download, footage) or a failure holds next to nothing, and
                    # waiting here would hand takes to the CPU pool first come, first
                    # served, not by priority.
                    held = getattr(take, "frames", None) is not None
                    if held:
                        self.executor.backlog.acquire(job.priority)
                    try:
                        stored = job.on_take(take)
                    except BaseException:
                        if held:
                            self.executor.backlog.release()
                        raise
                    if held:
                        stored.add_done_callback(lambda _: self.executor.backlog.release())
                    made += 1
            except BaseException as exc:  # handed to the waiting render thread
                job.future.set_exception(exc)
            else:
                job.future.set_result(made)

    def _timed(self, takes: Iterator[Take | TakeFailure]) -> Iterator[Take | TakeFailure]:
        """The engine's takes, with the time spent inside the engine counted."""
        import time

        while True:
            started = time.perf_counter()
            try:
                take = next(takes)
            except StopIteration:
                self.executor.add_busy("generate", time.perf_counter() - started)
                return
            self.executor.add_busy("generate", time.perf_counter() - started)
            yield take

    def close(self) -> None:
        for _ in self.threads:
            self.jobs.put(_Job(_STOP_PRIORITY, next(self.executor._order), None, None, None, None))


def queued(items: queue.Queue[Q]) -> Iterator[Q]:
    """Takes out and yields what a queue holds now, without waiting."""
    while True:
        try:
            yield items.get_nowait()
        except queue.Empty:
            return


def _trace(started: float, ended: float, kind: str, what: str, priority: Priority) -> None:
    """Appends one piece of work to the file named by STITCHCRAFT_TRACE (for the
    benchmarks: where the time went), when set."""
    path = os.environ.get("STITCHCRAFT_TRACE")
    if path:
        with open(path, "a") as out:
            out.write(f"{started:.3f} {ended:.3f} {kind} {what} {','.join(map(str, priority))}\n")


def _gathered(parts: list[Future[int]]) -> Future[int]:
    """One future for several engine calls: the takes they made, or the first failure."""
    whole: Future[int] = Future()
    whole.set_running_or_notify_cancel()
    left = [len(parts)]
    lock = threading.Lock()

    def done(_: Future[int]) -> None:
        with lock:
            left[0] -= 1
            if left[0]:
                return
        failed = next((p for p in parts if p.cancelled() or p.exception() is not None), None)
        if failed is None:
            whole.set_result(sum(p.result() for p in parts))
        elif failed.cancelled():
            whole.set_exception(CancelledError())
        else:
            whole.set_exception(failed.exception())  # type: ignore[arg-type]

    for part in parts:
        part.add_done_callback(done)
    return whole


class Backlog:
    """Room for takes of pixels waiting for the CPU pool: a bounded semaphore whose
    waiters are let in lowest priority first (then in the order they came), not in the
    order they happen to wake."""

    def __init__(self, room: int):
        self.free = room
        self.waiting: list[tuple[Priority, int]] = []  # a heap
        self.order = itertools.count()
        self.changed = threading.Condition()

    def acquire(self, priority: Priority = (9,)) -> None:
        with self.changed:
            me = (priority, next(self.order))
            heapq.heappush(self.waiting, me)
            self.changed.wait_for(lambda: self.free > 0 and self.waiting[0] == me)
            heapq.heappop(self.waiting)
            self.free -= 1
            self.changed.notify_all()  # room may be left for the next in line

    def release(self) -> None:
        with self.changed:
            self.free += 1
            self.changed.notify_all()


@dataclass(order=True)
class _Work:
    priority: Priority
    order: int
    fn: Callable[[], Any] | None = field(compare=False)  # None: stop serving
    future: Future[Any] | None = field(compare=False, default=None)


class _CpuPool:
    """Worker threads serving CPU work from a priority queue: a thread pool whose queue
    lets the critical path's work go first."""

    def __init__(self, workers: int):
        self.queue: queue.PriorityQueue[_Work] = queue.PriorityQueue()
        self.order = itertools.count()
        self.pending = 0  # queued or running
        self.settled = threading.Condition()
        self.threads = [threading.Thread(target=self._serve, name=f"cpu-{i}", daemon=True)
                        for i in range(workers)]
        for thread in self.threads:
            thread.start()

    def submit(self, fn: Callable[[], T], priority: Priority) -> Future[T]:
        future: Future[T] = Future()
        with self.settled:
            self.pending += 1
        self.queue.put(_Work(priority, next(self.order), fn, future))
        return future

    def quiet(self, timeout: float) -> bool:
        with self.settled:
            return self.settled.wait_for(lambda: self.pending == 0, timeout)

    def _settle_one(self) -> None:
        with self.settled:
            self.pending -= 1
            if not self.pending:
                self.settled.notify_all()

    def _serve(self) -> None:
        while True:
            work = self.queue.get()
            if work.fn is None or work.future is None:
                return
            try:
                if not work.future.set_running_or_notify_cancel():
                    continue
                try:
                    result = work.fn()
                except BaseException as exc:  # handed to whoever waits on the future
                    work.future.set_exception(exc)
                else:
                    work.future.set_result(result)
            finally:
                self._settle_one()

    def shutdown(self) -> None:
        """Cancels queued work, lets running work finish, stops the threads."""
        for work in queued(self.queue):
            if work.future is not None:
                work.future.cancel()
                self._settle_one()
        for _ in self.threads:
            self.queue.put(_Work(_STOP_PRIORITY, next(self.order), None))
        for thread in self.threads:
            thread.join()


class LocalExecutor:
    """Engine lanes on threads in this process, and a thread pool for CPU work.

    Args:
        cpu_workers: Threads for storing and scoring (default: the machine's cores).
        backlog: Takes that may wait for a CPU worker before engines pause
            (default: twice the CPU workers).
    """

    def __init__(self, cpu_workers: int | None = None, backlog: int | None = None):
        self.cpu_workers = cpu_workers or max(1, min(8, os.cpu_count() or 1))
        self.pool = _CpuPool(self.cpu_workers)
        self.backlog = Backlog(backlog or 2 * self.cpu_workers)
        self._lanes: dict[str, _Lane] = {}
        self._order = itertools.count()
        self._busy: dict[str, float] = {"generate": 0.0, "cpu": 0.0}
        self._lock = threading.Lock()

    def generate(self, engine: Engine, request: SegmentRequest, priority: Priority,
                 on_take: Callable[[Take | TakeFailure], Future[Any]]) -> Future[int]:
        gpu = engine.CAPABILITIES.needs_gpu
        name = "gpu" if gpu else f"{engine.NAME}#{id(engine)}"
        with self._lock:
            lane = self._lanes.get(name)
            if lane is None:
                width = 1 if gpu else max(1, int(engine.CONCURRENCY))
                lane = self._lanes[name] = _Lane(name, width, self)
        if lane.width == 1 or len(request.seeds) < 2:
            return self._queue(lane, engine, request, priority, on_take)
        # An engine with many calls in flight makes each take in a call of its own.
        return _gathered([self._queue(lane, engine, dataclasses.replace(request, seeds=[seed]),
                                      priority, on_take) for seed in request.seeds])

    def _queue(self, lane: _Lane, engine: Engine, request: SegmentRequest, priority: Priority,
               on_take: Callable[[Take | TakeFailure], Future[Any]]) -> Future[int]:
        future: Future[int] = Future()
        lane.jobs.put(_Job(priority, next(self._order), engine, request, on_take, future))
        return future

    def cpu(self, fn: Callable[..., T], *args: Any, priority: Priority = (9,)) -> Future[T]:
        import time

        def timed() -> T:
            started = time.perf_counter()
            try:
                return fn(*args)
            finally:
                ended = time.perf_counter()
                self.add_busy("cpu", ended - started)
                _trace(started, ended, "cpu", str(getattr(fn, "__name__", "work")), priority)

        return self.pool.submit(timed, priority)

    def add_busy(self, kind: str, seconds: float) -> None:
        with self._lock:
            self._busy[kind] = self._busy.get(kind, 0.0) + seconds

    def stats(self) -> dict[str, float]:
        with self._lock:
            return {k: round(v, 3) for k, v in self._busy.items()}

    def quiet(self, timeout: float) -> bool:
        return self.pool.quiet(timeout)

    def close(self) -> None:
        for lane in self._lanes.values():
            for job in queued(lane.jobs):  # drop queued calls: the render is over or failed
                if job.future is not None:
                    job.future.cancel()
            lane.close()
        self.pool.shutdown()


EXECUTORS = ("local", "ray")


def executor_for(name: str = "local", address: str | None = None, *,
                 cpu_workers: int | None = None) -> Executor:
    """The executor called `name`: ``local`` (threads in this process) or ``ray`` (the
    actors of a Ray cluster at `address`, see `stitchcraft.generate.ray_executor`).

    Raises:
        ConfigError: an unknown name, an address given to the local executor, or Ray
            not installed or its cluster unreachable.
    """
    from ..errors import ConfigError

    if name == "local":
        if address is not None:
            raise ConfigError("--address names a Ray cluster; it needs --executor ray")
        return LocalExecutor(cpu_workers=cpu_workers)
    if name == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(address, cpu_workers=cpu_workers)
    raise ConfigError(f"unknown executor '{name}'; choose one of: {', '.join(EXECUTORS)}")
