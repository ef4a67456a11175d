"""The Ray executor: a render's engine calls spread over the GPUs of a Ray cluster.

The same four methods as `LocalExecutor` (see `stitchcraft.generate.executor`), with the engine
calls made by Ray actors:

- every engine that needs a GPU is served by *one actor per GPU* of the cluster
  (``num_gpus=1``); an actor keeps the pipeline it last ran loaded across takes and
  swaps it only when a take of another GPU engine comes (pipelines are not loaded side
  by side, as on the local GPU lane);
- every other engine that makes its takes here (titles, stills, footage) has one actor
  of its own (``num_cpus=1``);
- hosted engines stay on the driver's local lanes: their work is a network wait, their
  journal of paid-for jobs lives beside the driver's take store, and their keys never
  leave the driver.

Takes are asked for one at a time, by the content hash the generator gave each
(`SegmentRequest.jobs`), each at the priority of its request: two requests for the
same take, while it is being made or stored, share one engine call. A worker returns
the take to the driver (its frames, or for a file take that is its own product the
file's bytes), and the driver stores it through `TakeStore.put` on its CPU pool, as the
local executor does; storing, scoring and segment encoding stay on the driver. A
worker that dies mid-take is restarted by Ray (``max_restarts``) while its take goes
back in the queue for the next free worker, up to `ATTEMPTS` times; takes already
returned are stored on the driver and never made again.

Ray is optional (``pip install 'stitchcraft[ray]'``): this module imports it, and only
`executor_for` (in `stitchcraft.generate.executor`) imports this module.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..engines.base import Engine, SegmentRequest, Take, TakeFailure
from ..errors import ConfigError, EngineError, EngineUnavailable, StitchError
from .executor import LocalExecutor, Priority, _gathered, queued

T = TypeVar("T")
INSTALL_HINT = "pip install 'stitchcraft[ray]'"
ATTEMPTS = 3  # a take whose worker died this many times fails the render
PLACEMENT_SECONDS = float(os.environ.get("STITCHCRAFT_RAY_PLACEMENT_TIMEOUT", "300"))
_STOP: Priority = (1 << 62,)


def import_ray() -> Any:
    """The `ray` module.

    Raises:
        ConfigError: Ray is not installed (the message says how to install it).
    """
    try:
        import ray
    except ImportError:
        raise ConfigError(f"the ray executor needs Ray, which is not installed here; install "
                          f"it with: {INSTALL_HINT}") from None
    return ray


@dataclass
class Made:
    """What a worker sends back for one take.

    Attributes:
        takes: What the engine yielded (one take, or a `TakeFailure`).
        files: Take index -> the bytes of a file take the worker made itself
            (`Take.copy_source`): its path means nothing on the driver.
        seconds: Time spent inside the engine.
        worker: Host and process of the worker, for messages.
    """

    takes: list[Take | TakeFailure]
    files: dict[int, bytes]
    seconds: float
    worker: str


class EngineWorker:
    """A Ray actor's body: makes takes with the engine it was last asked for, keeping
    it (its pipeline loaded) until a take of another engine comes."""

    def __init__(self) -> None:
        self.key: tuple[str, ...] | None = None
        self.engine: Engine | None = None

    def ready(self) -> str:
        import socket

        return f"{socket.gethostname()}:{os.getpid()}"

    def make(self, engine_cls: type[Engine], settings: Any, request: SegmentRequest) -> Made:
        key = (engine_cls.__module__, engine_cls.__qualname__,
               settings.model_dump_json() if settings is not None else "")
        if key != self.key:
            if self.engine is not None:
                self.engine.close()
            self.engine, self.key = None, None
            self.engine, self.key = engine_cls(settings), key
        assert self.engine is not None
        started = time.perf_counter()
        takes = list(self.engine.generate(request))
        seconds = time.perf_counter() - started
        files = {i: take.source.read_bytes() for i, take in enumerate(takes)
                 if isinstance(take, Take) and take.source is not None and take.copy_source}
        return Made(takes, files, seconds, self.ready())


@dataclass
class _Flight:
    """One take asked of the cluster, and every request waiting for it."""

    key: str
    engine: Engine
    request: SegmentRequest  # for this take's seed alone, without the driver's journal
    waiting: list[tuple[Callable[[Take | TakeFailure], Future[Any]], Future[int]]]
    priority: Priority = (9,)  # the first request's
    attempts: int = 0
    made: list[Take | TakeFailure] | None = None


@dataclass(order=True)
class _Job:
    priority: Priority
    order: int
    flight: _Flight | None = field(compare=False)  # None: stop serving


class _Pool:
    """Actors of one kind and the driver threads that feed them, one take at a time,
    lowest priority first."""

    def __init__(self, executor: RayExecutor, name: str, size: int, resources: Mapping[str, float]):
        ray = executor.ray
        actor = ray.remote(EngineWorker)
        self.executor, self.name = executor, name
        self.jobs: queue.PriorityQueue[_Job] = queue.PriorityQueue()
        # Restarted when it dies (its take is asked again, here, of any free worker).
        self.actors = [actor.options(name=f"stitchcraft-{executor.run}-{name}-{i}", max_restarts=-1,
                                     max_task_retries=0, **resources).remote()
                       for i in range(size)]
        self.live = size
        self.broken: StitchError | None = None
        self.threads = [threading.Thread(target=self._serve, args=(a,), name=f"ray-{name}-{i}",
                                         daemon=True) for i, a in enumerate(self.actors)]
        for thread in self.threads:
            thread.start()

    def put(self, priority: Priority, flight: _Flight) -> None:
        if self.broken is not None:
            self.executor._fail(flight, self.broken)
        else:
            self.jobs.put(_Job(priority, next(self.executor._order), flight))

    def _serve(self, actor: Any) -> None:
        ray = self.executor.ray
        placed = False
        while True:
            job = self.jobs.get()
            flight = job.flight
            if flight is None:
                return
            if self.executor.closing:
                self.executor._fail(flight, EngineError("the render ended before this take was made"))
                continue
            if not placed:
                try:
                    ray.get(actor.ready.remote(), timeout=PLACEMENT_SECONDS)
                    placed = True
                except ray.exceptions.GetTimeoutError:
                    self.jobs.put(job)  # for a worker that could be placed
                    self._lost(f"Ray placed no worker for {self.name} within "
                               f"{PLACEMENT_SECONDS:g} s: the cluster lacks the resources "
                               f"({self.executor.resources_needed(self.name)} per worker)")
                    return
                except ray.exceptions.RayActorError:
                    pass  # died starting: restarted by Ray, asked again below
            try:
                made = ray.get(actor.make.remote(type(flight.engine), flight.engine.settings,
                                                 flight.request))
            except ray.exceptions.RayActorError as exc:  # the worker died mid-take
                flight.attempts += 1
                if flight.attempts >= ATTEMPTS:
                    self.executor._fail(flight, EngineError(
                        f"engine '{flight.engine.NAME}': the Ray worker making take "
                        f"{flight.key[:12]} died {flight.attempts} times (last: {exc})"))
                else:  # back at its own place in the queue, for whichever worker is free
                    self.jobs.put(job)
                continue
            except ray.exceptions.RayTaskError as exc:  # the engine's own exception
                cause = exc.cause if isinstance(exc.cause, BaseException) else exc
                self.executor._fail(flight, cause)
                continue
            except BaseException as exc:  # the connection to the cluster, say
                self.executor._fail(flight, exc)
                continue
            self.executor._made(flight, made)

    def _lost(self, reason: str) -> None:
        """One worker cannot be placed; with none left, every take waiting fails."""
        with self.executor._lock:
            self.live -= 1
            if self.live:
                return
            self.broken = EngineUnavailable(reason)
        self.drain(self.broken)

    def drain(self, error: BaseException) -> None:
        for job in queued(self.jobs):
            if job.flight is not None:
                self.executor._fail(job.flight, error)

    def close(self) -> None:
        self.drain(EngineError("the render ended before this take was made"))
        for _ in self.threads:
            self.jobs.put(_Job(_STOP, next(self.executor._order), None))
        for actor in self.actors:
            self.executor.ray.kill(actor)


class RayExecutor:
    """Engine calls on the actors of a Ray cluster; CPU work on the driver.

    Args:
        address: The cluster (``ray://host:10001``, ``host:6379`` or ``auto``); None
            joins the instance this process already started, or starts a local one.
        cpu_workers: Driver threads for storing and scoring (as `LocalExecutor`).

    Raises:
        ConfigError: Ray is not installed, or the cluster cannot be reached.
    """

    def __init__(self, address: str | None = None, cpu_workers: int | None = None):
        self.ray = import_ray()
        self.address = address
        self._started = False
        self.closing = False
        if not self.ray.is_initialized():
            try:
                self.ray.init(address=address, include_dashboard=False if address is None else None,
                              logging_level="warning", log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(f"cannot reach the Ray cluster at {address or 'a new local instance'}: "
                                  f"{exc}") from None
            self._started = True
        self.local = LocalExecutor(cpu_workers)
        self.run = uuid.uuid4().hex[:8]  # actor names of this render, beside other renders'
        self._pools: dict[str, _Pool] = {}
        self._flights: dict[str, _Flight] = {}
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._incoming = Path(tempfile.mkdtemp(prefix="stitchcraft-ray-"))

    # -- the Executor protocol -------------------------------------------------------

    def generate(self, engine: Engine, request: SegmentRequest, priority: Priority,
                 on_take: Callable[[Take | TakeFailure], Future[Any]]) -> Future[int]:
        if engine.CAPABILITIES.hosted:
            return self.local.generate(engine, request, priority, on_take)
        try:
            pool = self._pool(engine)
        except StitchError as exc:
            failed: Future[int] = Future()
            failed.set_exception(exc)
            return failed
        ids = request.jobs.takes if request.jobs is not None else {}
        parts: list[Future[int]] = []
        for seed in request.seeds:
            part: Future[int] = Future()
            parts.append(part)
            key = ids.get(seed) or f"unnamed-{uuid.uuid4().hex}"  # no id: never shared
            with self._lock:
                flight = self._flights.get(key)
                if flight is None:
                    flight = self._flights[key] = _Flight(
                        key, engine, dataclasses.replace(request, seeds=[seed], jobs=None),
                        [(on_take, part)], priority)
                    pool.put(priority, flight)
                    continue
                flight.waiting.append((on_take, part))
                made = flight.made
            if made is not None:  # made, still being stored: handed over now
                self._hand(made, on_take, part, hold=False)
        return _gathered(parts)

    def cpu(self, fn: Callable[..., T], *args: Any, priority: Priority = (9,)) -> Future[T]:
        return self.local.cpu(fn, *args, priority=priority)

    def add_busy(self, kind: str, seconds: float) -> None:
        self.local.add_busy(kind, seconds)

    def stats(self) -> dict[str, float]:
        return self.local.stats()

    def quiet(self, timeout: float) -> bool:
        return self.local.quiet(timeout)

    def close(self) -> None:
        self.closing = True
        for pool in self._pools.values():
            pool.close()
        self.local.close()
        shutil.rmtree(self._incoming, ignore_errors=True)
        if self._started:
            self.ray.shutdown()

    # -- placement -------------------------------------------------------------------

    def resources_needed(self, pool: str) -> str:
        return "1 GPU" if pool == "gpu" else "1 CPU"

    def _pool(self, engine: Engine) -> _Pool:
        gpu = engine.CAPABILITIES.needs_gpu
        name = "gpu" if gpu else f"cpu-{engine.NAME}"
        with self._lock:
            pool = self._pools.get(name)
            if pool is not None:
                return pool
        if gpu:
            gpus = int(self.ray.cluster_resources().get("GPU", 0))
            if gpus < 1:
                raise EngineUnavailable(f"engine '{engine.NAME}' needs a GPU, and the Ray cluster "
                                        f"at {self.address or 'this machine'} has none")
            # No CPU reserved besides (Ray reserves one per actor unless told): a GPU
            # node's CPUs stay free for the actors of the CPU engines.
            size, resources = gpus, {"num_gpus": 1, "num_cpus": 0}
        else:
            size, resources = 1, {"num_cpus": 1}
        with self._lock:
            if name not in self._pools:
                self._pools[name] = _Pool(self, name, size, resources)
            return self._pools[name]

    # -- results ---------------------------------------------------------------------

    def _made(self, flight: _Flight, made: Made) -> None:
        self.local.add_busy("generate", made.seconds)
        takes = [self._landed(take, made.files.get(i)) for i, take in enumerate(made.takes)]
        with self._lock:
            flight.made = takes
            waiting = list(flight.waiting)
        stored = [s for on_take, part in waiting
                  for s in self._hand(takes, on_take, part, hold=True, priority=flight.priority)]
        left = [len(stored)]

        def forget(_: Future[Any]) -> None:  # stored: a request from now on finds it in the store
            with self._lock:
                left[0] -= 1
                if left[0] <= 0 and self._flights.get(flight.key) is flight:
                    del self._flights[flight.key]

        if not stored:
            left[0] = 1
            forget(Future())
        for work in stored:
            work.add_done_callback(forget)

    def _landed(self, take: Take | TakeFailure, content: bytes | None) -> Take | TakeFailure:
        """A take as the driver stores it: a file the worker made, written here."""
        if content is None or not isinstance(take, Take) or take.source is None:
            return take
        path = self._incoming / f"{uuid.uuid4().hex}{take.source.suffix}"
        path.write_bytes(content)
        audio = path if take.audio == take.source else take.audio
        return dataclasses.replace(take, source=path, audio=audio)

    def _hand(self, takes: list[Take | TakeFailure], on_take: Callable[[Take | TakeFailure], Future[Any]],
              part: Future[int], *, hold: bool, priority: Priority = (9,)) -> list[Future[Any]]:
        """Hands a request its take (on this thread) and settles its part; with `hold`,
        a take of pixels counts against the local executor's backlog until stored
        (waiting for room at `priority`)."""
        stored: list[Future[Any]] = []
        backlog = self.local.backlog
        try:
            for take in takes:
                held = hold and getattr(take, "frames", None) is not None
                if held:
                    backlog.acquire(priority)
                try:
                    work = on_take(take)
                except BaseException:
                    if held:
                        backlog.release()
                    raise
                if held:
                    work.add_done_callback(lambda _: backlog.release())
                stored.append(work)
        except BaseException as exc:  # handed to the waiting render thread
            _settle(part, exc=exc)
        else:
            _settle(part, result=len(takes))
        return stored

    def _fail(self, flight: _Flight, error: BaseException) -> None:
        with self._lock:
            if self._flights.get(flight.key) is flight:
                del self._flights[flight.key]
            waiting = list(flight.waiting)
        for _, part in waiting:
            _settle(part, exc=error)


def _settle(part: Future[int], *, result: int = 0, exc: BaseException | None = None) -> None:
    try:
        if exc is not None:
            part.set_exception(exc)
        else:
            part.set_result(result)
    except InvalidStateError:  # cancelled: the render is over
        pass
