"""What every hosted engine shares: submit a job, poll it, download the video, durably.

A hosted engine makes one take per job at a provider. `HostedEngine.generate` runs each
job through the same steps, whatever the provider:

1. The job is looked up in the render's `JobJournal` (by take id). A job submitted by an
   earlier, interrupted render is polled, never submitted again; a finished download
   is used as it is.
2. Otherwise the journal records the intent (take id, provider, request), the job is
   submitted, and the journal records the provider's job id at once.
3. The job is polled until it ends. Rate limits (429, Retry-After, a "throttled"
   state) and transient failures (5xx, connection errors) are retried within a bounded
   budget, with backoff and jitter; a job past its timeout is cancelled where the
   provider can (else given up: it may still finish, and be billed).
4. A finished job's video is downloaded at once (result addresses expire) and becomes
   a file take: trimmed, put on the timeline's frame rate and fitted to the shot's size
   exactly as footage is, never re-encoded.

What the journal says when a candidate is given up decides what the next render does:

- the job ended failed or refused, or its finished video's address expired (billed, and
  gone): ``failed`` with the reason; not tried again unless ``--resubmit``;
- the job passed its timeout: ``failed`` too; one the provider could not cancel is
  checked once by the next render (it may have finished since, and was paid for);
- polling or downloading gave up on rate limits or transient errors: left
  ``submitted``, so the next render polls the job again instead of paying for another.

A provider subclass says only how to talk to it: `submit`, `status`, `cancel` and
`fetch`, translating its errors into `RateLimited`, `Transient`, `Uncertain`, `Refused`,
`ResultExpired` and `KeyRejected`. One rule matters more than the others: `_retrying`
sends a call again after `Transient`, so `submit` raises `Transient` only when the
request surely never reached the provider (the connection never opened, or an answer
the provider documents as safe to retry, such as a load-shedding 503). A failure that
may have reached it (a read timeout, a connection dropped after the request was sent, a
5xx the provider does not document as safe to retry) must be `Uncertain`: the job may
exist and be billed, and is never sent again by itself.

It declares what it makes (`durations`, `aspects`, what it conditions on) and what a
job costs (`tariff`: the seconds the provider bills and their price, dated), and owns
its SDK or HTTP clients through `_shared_client` / `_thread_client`, so `close` closes
them all.

Keys come from the environment only (`KEY_VARS`); every message that leaves an engine
goes through `redact`, so a key a provider echoes back is never shown or written.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import Field

from ...errors import EngineUnavailable
from ...storyboard import EngineSettings
from ..base import (
    Availability,
    Capabilities,
    Engine,
    SegmentRequest,
    Take,
    TakeFailure,
    package_version,
)

if TYPE_CHECKING:
    import httpx
    import numpy as np

    from ...generate.jobs import JobBook

T = TypeVar("T")

# Retries of one call to a provider before its candidate is given up (rate limits and
# transient failures alike); the waits grow from the poll interval up to MAX_BACKOFF.
RETRIES = 8
MAX_BACKOFF = 120.0
# A download may be this much shorter than asked before the candidate is refused; a
# shortfall inside it holds the last frame (as the assembly does past a clip's end).
SHORT_SLACK_SECONDS = 0.25


JsonValue = str | int | float | bool | None | list[Any] | dict[str, Any]


class HostedSettings(EngineSettings):
    """The settings every hosted engine takes, under ``engines.<name>:``."""

    PLACEMENT = frozenset({"device", "batch", "base_url", "max_concurrent", "poll_interval",
                           "timeout", "price_per_second", "fallback"})

    model: str | None = Field(default=None, max_length=200,  # type: ignore[assignment]
                              description="the provider's model name")
    base_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$", max_length=500,
                                 description="another endpoint for the provider's API")
    max_concurrent: int = Field(default=4, ge=1, le=64, description="jobs in flight at once")
    poll_interval: float = Field(default=5.0, ge=0.01, le=600, description="seconds between polls")
    timeout: float = Field(default=1800.0, ge=1, le=86_400,
                           description="seconds a job may take before it is cancelled")
    price_per_second: float | None = Field(default=None, ge=0, le=100,
                                           description="USD per generated second (default: the "
                                                       "provider's published price)")
    input: dict[str, JsonValue] = Field(default_factory=dict,
                                        description="model-specific fields passed to the provider")
    fallback: list[str] = Field(default_factory=list, max_length=8,
                                description="engines to use when this one fails a whole shot")


@dataclass
class Job:
    """One take to make at a provider, as a provider adapter sees it.

    Attributes:
        prompt, negative_prompt: What happens.
        seconds: The duration asked of the provider (one it allows).
        aspect: The aspect ratio asked, as the provider spells it (``16:9``, ``1280:720``).
        first_frame: PNG bytes of the frame the video starts on (image-to-video, chains).
        last_frame: PNG bytes of a frame it ends on (``bridge``), where allowed.
        references: PNG or JPEG bytes of identity/style references, where allowed.
        seed: The provider's seed, where it takes one.
        model: The provider's model name.
        input: Model-specific fields from the settings, passed through.
        bill: What it is billed (`HostedEngine.bill`), for the manifest.
        size: (width, height) of the picture wanted, for an image job (`images`);
            None for a video, whose size follows `aspect`.
    """

    prompt: str | None
    negative_prompt: str | None
    seconds: float
    aspect: str
    first_frame: bytes | None = None
    last_frame: bytes | None = None
    references: list[bytes] = field(default_factory=list)
    seed: int = 0
    model: str = ""
    input: dict[str, Any] = field(default_factory=dict)
    bill: Bill | None = None
    size: tuple[int, int] | None = None


@dataclass
class JobStatus:
    """Where a job stands, in stitchcraft's words.

    Attributes:
        state: ``queued``, ``throttled``, ``running``, ``succeeded``, ``failed`` or
            ``cancelled`` (and ``abandoned``: past its timeout, not cancelled).
        video: Where the finished video is (a URL, or a provider's file name).
        reason: Why it failed, in the provider's words.
        progress: 0..1 when the provider says.
    """

    state: str
    video: str | None = None
    reason: str = ""
    progress: float | None = None

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Bill:
    """What one job asks of a provider and what it costs.

    Attributes:
        seconds: The duration asked (one the model makes).
        billed_seconds: The seconds the provider bills for it.
        usd: Its estimated price.
    """

    seconds: float
    billed_seconds: float
    usd: float


class ProviderError(Exception):
    """A provider's answer that is not a result."""


class RateLimited(ProviderError):
    """Too many requests: try again after `retry_after` seconds (None: back off)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Transient(ProviderError):
    """A failure worth retrying: a 5xx, a dropped connection, a timeout."""


class Refused(ProviderError):
    """The provider will not make this take (moderation, an invalid request)."""


class Uncertain(ProviderError):
    """A submission whose fate is unknown (the connection dropped after the request was
    sent): the job may exist and be billed, so it is never retried by itself."""


class KeyRejected(ProviderError):
    """The key is missing, invalid or not allowed to use this model."""


class ResultExpired(ProviderError):
    """The finished video's address no longer serves it."""


class HostedEngine(Engine):
    """A model behind a provider's job API; subclasses talk to one provider.

    Attributes:
        PROVIDER: The provider's name, for messages.
        KEY_VARS: Environment variables holding the key (all needed).
        SDK: The distribution the engine talks through, checked by `availability`.
        DEFAULT_MODEL: The model used when the settings name none.
        DURATIONS: Durations the model can make, seconds, ascending.
        ASPECTS: Aspect ratios it can make, as the provider spells them.
        PRICE_PER_SECOND: The published price (USD per generated second) and its date,
            used by the default `tariff`.
        TYPICAL_SECONDS: A typical job's wall time, for `stitch plan`.
        FIRST_FRAME_START: Whether a video made from a first frame shows that frame
            first (most do): the take then starts one frame in.
        CAN_CANCEL: Whether the provider documents a cancel call (`cancel`); a job past
            its timeout at a provider without one is given up, not cancelled.
    """

    SETTINGS: ClassVar[type[EngineSettings] | None] = HostedSettings
    PROVIDER: ClassVar[str] = ""
    KEY_VARS: ClassVar[tuple[str, ...]] = ()
    SDK: ClassVar[str | None] = None
    DEFAULT_MODEL: ClassVar[str] = ""
    DURATIONS: ClassVar[tuple[float, ...]] = ()
    ASPECTS: ClassVar[tuple[str, ...]] = ("16:9", "9:16", "1:1")
    PRICE_PER_SECOND: ClassVar[tuple[float, str]] = (0.0, "")
    TYPICAL_SECONDS: ClassVar[float] = 60.0
    FIRST_FRAME_START: ClassVar[bool] = True
    CAN_CANCEL: ClassVar[bool] = False

    def __init__(self, settings: EngineSettings | None = None):
        super().__init__(settings)
        self.CONCURRENCY = self.hosted.max_concurrent  # type: ignore[misc]
        self._local = threading.local()
        self._clients_lock = threading.Lock()
        self._shared: Any = None
        self._pngs: dict[int, tuple[np.ndarray, bytes]] = {}  # `_first_frame_png`
        self._png_lock = threading.Lock()
        # Every client made, with how to close it (per-thread ones included).
        self._clients: list[tuple[Any, Callable[[Any], None]]] = []

    @property
    def hosted(self) -> HostedSettings:
        assert isinstance(self.settings, HostedSettings)
        return self.settings

    @property
    def model(self) -> str:
        return self.model_for(self.settings)

    # -- what the provider offers --------------------------------------------------------

    @classmethod
    def model_for(cls, settings: EngineSettings | None = None) -> str:
        """The model these settings name, else the engine's default."""
        return cls.settings_for(settings).model or cls.DEFAULT_MODEL

    @classmethod
    def durations(cls, model: str) -> tuple[float, ...]:
        """Durations `model` can make, seconds ascending (per-model where it differs)."""
        return cls.DURATIONS

    @classmethod
    def aspects(cls, model: str, *, image: bool = False) -> tuple[str, ...]:
        """Aspect ratios `model` can make, from a first-frame image (`image`) or from
        text (some models offer different ratios for each)."""
        return cls.ASPECTS

    @classmethod
    def capabilities_for(cls, settings: EngineSettings | None = None) -> Capabilities:
        """`CAPABILITIES` with the model's longest duration as the limit of one call."""
        model = cls.model_for(settings)
        return dataclasses.replace(cls.model_capabilities(model),
                                   max_seconds=max(cls.durations(model)), hosted=True)

    @classmethod
    def model_capabilities(cls, model: str) -> Capabilities:
        """What `model` conditions on (per model where it differs)."""
        return cls.CAPABILITIES

    @classmethod
    def bill(cls, settings: EngineSettings | None, seconds: float, *, image: bool = False,
             references: bool = False) -> Bill:
        """The duration a job asks and what the provider bills for it: the one place
        both are decided, for the job sent (`job_for`), the manifest (`_take`) and the
        estimate before a render (`cost.estimate`).

        Args:
            settings: The engine's settings (model, ``input:``, ``price_per_second``).
            seconds: The video wanted, seconds (the frame it starts from included).
            image: The job starts from an image (image-to-video, a chain).
            references: The job carries reference images.
        """
        chosen = cls.settings_for(settings)
        assert isinstance(chosen, HostedSettings)
        found = cls.tariff(cls.model_for(chosen), chosen, seconds, image=image,
                           references=references)
        if chosen.price_per_second is not None:  # the storyboard's price wins
            found = dataclasses.replace(found, usd=found.billed_seconds * chosen.price_per_second)
        return dataclasses.replace(found, usd=round(found.usd, 4))

    @classmethod
    def tariff(cls, model: str, settings: HostedSettings, seconds: float, *, image: bool,
               references: bool) -> Bill:
        """What the provider asks and charges for a job of `model` wanting `seconds`
        (a provider overrides it where the price or the duration depends on the model,
        its ``input:`` settings or the request); the default bills the shortest duration
        that holds it at `PRICE_PER_SECOND`."""
        asked = cls.fit_duration(model, seconds)
        return Bill(asked, asked, asked * cls.PRICE_PER_SECOND[0])

    @classmethod
    def price_per_second(cls, settings: EngineSettings | None = None) -> float:
        """USD per billed second of the model's longest text-to-video take (to show)."""
        model = cls.model_for(settings)
        found = cls.bill(settings, max(cls.durations(model)))
        return round(found.usd / found.billed_seconds, 4) if found.billed_seconds else 0.0

    @classmethod
    def wanted_seconds(cls, frames: int, fps: float, condition: int = 0) -> float:
        """Seconds of video to ask of the provider for a take of `frames` timeline frames.

        A chained take starts one frame in (the video shows the conditioning frame
        first), so it would need one frame more than its shot: a chained 5 s shot on a
        5/10 s model would be billed 10 s. Instead it asks for the shot's own length and
        holds its last frame for that one frame (`_take`): one repeated frame at the
        end of a shot, rather than paying for the next duration."""
        return frames / fps

    @classmethod
    def fit_duration(cls, model: str, seconds: float) -> float:
        """The shortest duration `model` makes that holds `seconds` (the longest if none)."""
        allowed = cls.durations(model)
        return next((d for d in allowed if d + 1e-6 >= seconds), allowed[-1])

    @classmethod
    def fit_aspect(cls, model: str, width: int, height: int, *, image: bool = False) -> str:
        """The allowed aspect ratio closest to width:height (among those `model` makes
        from an image, or from text)."""
        wanted = math.log(width / height)

        def distance(aspect: str) -> float:
            w, _, h = aspect.partition(":")
            return abs(math.log(float(w) / float(h)) - wanted)

        return min(cls.aspects(model, image=image), key=distance)

    @classmethod
    def availability(cls, settings: EngineSettings | None = None) -> Availability:
        if cls.SDK and package_version(cls.SDK) is None:
            return Availability(False, f"the {cls.PROVIDER} client is not installed: "
                                       f"pip install 'stitchcraft[hosted]' (or {cls.SDK})")
        missing = [name for name in cls.KEY_VARS if not os.environ.get(name, "").strip()]
        if missing:
            return Availability(False, f"set {' and '.join(missing)} to your {cls.PROVIDER} "
                                       "API key (the key is read from the environment only)")
        return Availability(True)

    @classmethod
    def fingerprint(cls, settings: EngineSettings | None = None) -> dict[str, Any]:
        found = super().fingerprint(settings)
        found["model"] = cls.model_for(settings)
        return found

    def keys(self) -> dict[str, str]:
        """The key variables' values; never logged, written or shown."""
        return {name: os.environ.get(name, "").strip() for name in self.KEY_VARS}

    def redact(self, text: str) -> str:
        """`text` with every key's value (and any long fragment of it) blanked."""
        for value in self.keys().values():
            if len(value) >= 4:
                text = text.replace(value, "[key]")
                for part in (value[: len(value) // 2], value[len(value) // 2:]):
                    if len(part) >= 8:
                        text = text.replace(part, "[key]")
        return text

    # -- the clients it talks through ----------------------------------------------------

    def _shared_client(self, make: Callable[[], T], close: Callable[[T], None] | None = None) -> T:
        """The engine's one client (thread-safe SDKs), made on first use by `make`;
        `close` closes it (default: its ``close()``)."""
        with self._clients_lock:
            if self._shared is None:
                self._shared = make()
                self._clients.append((self._shared, close or _close))
            return self._shared  # type: ignore[no-any-return]

    def _thread_client(self, make: Callable[[], T], close: Callable[[T], None] | None = None) -> T:
        """This thread's client (SDKs not documented as thread-safe), made by `make`."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = make()
            with self._clients_lock:
                self._clients.append((client, close or _close))
            self._local.client = client
        return client  # type: ignore[no-any-return]

    def close(self) -> None:
        """Closes every client the engine made, in every thread (at the end of a render);
        a later call makes new ones."""
        with self._clients_lock:
            made, self._clients = self._clients, []
            self._shared = None
            self._local = threading.local()
        for client, close in made:
            try:
                close(client)
            except Exception:  # noqa: BLE001 - a client that fails to close leaks at worst
                pass

    # -- what a provider adapter implements ----------------------------------------------

    def submit(self, job: Job) -> str:
        """Submits `job`; returns the provider's job id."""
        raise NotImplementedError

    def status(self, job_id: str) -> JobStatus:
        raise NotImplementedError

    def cancel(self, job_id: str) -> bool:
        """Cancels a job where the API allows; returns whether the provider accepted the
        cancel (False where it has none: `CAN_CANCEL`)."""
        return False

    def fetch(self, status: JobStatus, path: Path) -> None:
        """Downloads a finished job's video to `path` (default: GET its URL)."""
        assert status.video is not None
        download(status.video, path)

    # -- the steps every job goes through ------------------------------------------------

    def generate(self, request: SegmentRequest) -> Iterator[Take | TakeFailure]:
        if request.jobs is None:
            raise EngineUnavailable(f"engine '{self.NAME}' needs a job journal (render through "
                                    "the generate stage)")
        for seed in request.seeds:
            yield self._make(request, request.jobs, seed)

    def job_for(self, request: SegmentRequest, seed: int) -> Job:
        """The provider job that makes one take of `request`."""
        conditioned = request.condition_frames is not None
        first = None
        if request.condition_frames is not None and len(request.condition_frames):
            first = self._first_frame_png(request.condition_frames)
        elif request.image is not None:
            first = request.image.read_bytes() if request.image.suffix.lower() == ".png" else \
                png_file(request.image)
        references = [png_file(path) for path in request.references]
        wanted = self.wanted_seconds(request.frames, float(request.fps), int(conditioned))
        bill = self.bill(self.settings, wanted, image=first is not None, references=bool(references))
        return Job(
            prompt=request.prompt, negative_prompt=request.negative_prompt,
            seconds=bill.seconds,
            aspect=self.fit_aspect(self.model, request.width, request.height,
                                   image=first is not None),
            first_frame=first,
            last_frame=png(request.last_frame) if request.last_frame is not None else None,
            references=references, seed=seed, model=self.model, input=dict(self.hosted.input),
            bill=bill,
        )

    def _first_frame_png(self, condition_frames: np.ndarray) -> bytes:
        """The last conditioning frame as PNG, encoded once for all of a request's
        candidates (each is a job of its own, sent the same frame): the candidates'
        threads ask together, and one encodes while the others wait for it."""
        with self._png_lock:
            found = self._pngs.get(id(condition_frames))
            if found is not None and found[0] is condition_frames:
                return found[1]
            encoded = png(condition_frames[-1])
            if len(self._pngs) >= 8:
                self._pngs.clear()
            self._pngs[id(condition_frames)] = (condition_frames, encoded)
        return encoded

    def _make(self, request: SegmentRequest, jobs: JobBook, seed: int) -> Take | TakeFailure:
        job = self.job_for(request, seed)
        entry = jobs.entry(seed)
        try:
            if entry.get("state") == "downloaded" and jobs.video(seed).is_file():
                return self._take(request, jobs, seed, job, entry)
            if entry.get("state") == "submitting":
                return TakeFailure(seed, self.redact(self._uncertain()), {"engine": self.NAME})
            if entry.get("state") == "failed":
                if entry.get("left_running") and entry.get("job"):
                    late = self._finished_since(request, jobs, seed, job, str(entry["job"]))
                    if late is not None:
                        return late
                    entry = jobs.entry(seed)
                return TakeFailure(seed, self.redact(
                    f"{entry.get('reason') or 'failed'} (in an earlier render; not submitted again "
                    "by itself: run with --resubmit to try it again)"),
                    {"engine": self.NAME, "job": entry.get("job")})
            job_id = entry.get("job")
            if not job_id:
                jobs.submitting(seed, provider=self.PROVIDER, model=self.model,
                                request=job_summary(job))
                try:
                    job_id = self._retrying("submit", lambda: self.submit(job))
                except Uncertain:
                    return TakeFailure(seed, self.redact(self._uncertain()), {"engine": self.NAME})
                except ProviderError:
                    jobs.forget(seed)  # the provider answered: no job was made
                    raise
                jobs.submitted(seed, job_id)
            status = self._wait(jobs, seed, job_id)
            if status.state != "succeeded":
                reason = status.reason or f"the job ended {status.state}"
                jobs.failed(seed, reason, left_running=status.state == "abandoned")
                return TakeFailure(seed, self.redact(f"{self.PROVIDER} job {job_id}: {reason}"),
                                   {"engine": self.NAME, "job": job_id})
            self._download(jobs, seed, job_id, status)
            return self._take(request, jobs, seed, job, jobs.entry(seed))
        except KeyRejected as exc:
            raise EngineUnavailable(self.redact(
                f"{self.PROVIDER} rejected the key in {' / '.join(self.KEY_VARS)}: {exc}")) from None
        except Refused as exc:
            jobs.failed(seed, str(exc))
            return TakeFailure(seed, self.redact(f"{self.PROVIDER} refused the take: {exc}"),
                               {"engine": self.NAME, "job": jobs.entry(seed).get("job")})
        except ResultExpired as exc:
            # The job ran (and was billed) but its video is gone: polling it again cannot
            # bring it back, so the entry is failed and --resubmit makes the take anew.
            reason = f"{exc}; the job was billed but its video can no longer be downloaded"
            jobs.failed(seed, reason)
            job_id = jobs.entry(seed).get("job")
            return TakeFailure(seed, self.redact(
                f"{self.PROVIDER} job {job_id}: {reason} (run with --resubmit to make it anew)"),
                {"engine": self.NAME, "job": job_id})
        except (Transient, RateLimited) as exc:
            job_id = jobs.entry(seed).get("job")
            if not job_id:  # the submission surely did not reach the provider
                return TakeFailure(seed, self.redact(f"{self.PROVIDER}: {exc}"), {"engine": self.NAME})
            # The job exists and may still be running, or its video still be waiting: the
            # entry stays "submitted", so the next render polls it instead of paying again.
            return TakeFailure(seed, self.redact(
                f"{self.PROVIDER} job {job_id}: {exc}; gave up waiting on the provider, but the "
                "job may still be running: the next render polls it again (it is not submitted "
                "again)"), {"engine": self.NAME, "job": job_id})

    def _finished_since(self, request: SegmentRequest, jobs: JobBook, seed: int, job: Job,
                        job_id: str) -> Take | None:
        """A job given up at its timeout that the provider could not cancel, checked once:
        its video when it has finished since (it was paid for), else None (the entry then
        holds the provider's verdict where the job has ended)."""
        try:
            status = self.status(job_id)
        except ProviderError:
            return None
        if status.state == "succeeded":
            self._download(jobs, seed, job_id, status)
            made = self._take(request, jobs, seed, job, jobs.entry(seed))
            return made if isinstance(made, Take) else None
        if status.done:
            jobs.failed(seed, status.reason or f"the job ended {status.state}")
        return None

    def _uncertain(self) -> str:
        return (f"a submission of this take to {self.PROVIDER} was cut off before its job id "
                "came back, so the job may be running and billed; stitchcraft does not submit it "
                "again by itself. Run with --resubmit to submit it again")

    def _wait(self, jobs: JobBook, seed: int, job_id: str) -> JobStatus:
        """Polls a job until it ends or passes its timeout (then cancels it where the
        provider can, else gives it up: state ``abandoned``)."""
        started = jobs.entry(seed).get("submitted_at") or time.time()
        interval = self.hosted.poll_interval
        while True:
            status = self._retrying("poll", lambda: self.status(job_id))
            if status.done:
                return status
            if time.time() - started > self.hosted.timeout:
                return self._stop(job_id)
            wait = interval * (2 if status.state == "throttled" else 1)
            time.sleep(wait * random.uniform(0.9, 1.1))

    def _stop(self, job_id: str) -> JobStatus:
        """Cancels a job past its timeout; says honestly when it could not be."""
        late = f"did not finish within {self.hosted.timeout:g} s (engine timeout)"
        problem = ""
        try:
            accepted = self.cancel(job_id)
        except ProviderError as exc:
            accepted, problem = False, f" ({exc})"
        if accepted:
            return JobStatus("cancelled", reason=f"{late}; cancelled")
        refused = f"{self.PROVIDER} did not accept the cancel{problem}" if self.CAN_CANCEL \
            else f"{self.PROVIDER} has no cancel"
        return JobStatus("abandoned", reason=f"{late}; given up: {refused}, so the "
                                            "job may still finish and be billed (the next render "
                                            "collects it if it has)")

    def _download(self, jobs: JobBook, seed: int, job_id: str, status: JobStatus) -> None:
        """Downloads a finished job's video into the journal; an expired address is asked
        for again once (providers sign a fresh one on each status call)."""
        path = jobs.video(seed)
        part = path.with_name(path.name + ".part")
        try:
            self._retrying("download", lambda: self.fetch(status, part))
        except ResultExpired:
            fresh = self._retrying("poll", lambda: self.status(job_id))
            if fresh.state != "succeeded" or not fresh.video:
                raise
            self._retrying("download", lambda: self.fetch(fresh, part))
        os.replace(part, path)
        jobs.downloaded(seed)

    def _take(self, request: SegmentRequest, jobs: JobBook, seed: int, job: Job,
              entry: Mapping[str, Any]) -> Take | TakeFailure:
        """The downloaded video as a file take of exactly the request's frames."""
        from ...errors import MediaError
        from ...media import probe

        path = jobs.video(seed)
        try:
            info = probe(path)
        except MediaError as exc:
            jobs.failed(seed, "the downloaded video is unreadable")
            return TakeFailure(seed, f"{self.PROVIDER} job {entry.get('job')}: the downloaded video "
                                     f"is unreadable ({exc.reason})", {"engine": self.NAME})
        fps = float(request.fps)
        start = 1 / float(info.fps) if request.condition_frames is not None and self.FIRST_FRAME_START \
            and info.fps else 0.0
        needed = start + request.frames / fps
        held = max(0, math.ceil((needed - info.duration) * fps - 1e-6))
        if info.duration + SHORT_SLACK_SECONDS < needed:
            jobs.failed(seed, "the video is shorter than asked")
            return TakeFailure(seed, f"{self.PROVIDER} job {entry.get('job')} returned "
                                     f"{info.duration:.2f} s of video where {needed:.2f} s were asked",
                               {"engine": self.NAME})
        bill = job.bill or self.bill(self.settings, job.seconds)
        meta = {"provider": self.PROVIDER, "model": self.model, "job": entry.get("job"),
                "billed_seconds": bill.billed_seconds, "cost": bill.usd,
                "aspect": job.aspect, "native": f"{info.width}x{info.height}@{info.fps}"}
        if held:  # the assembly holds the last frame for these (a chained take, `wanted_seconds`)
            meta["held_frames"] = held
        label = f"{self.model} {job.seconds:g} s, seed {seed}"
        return Take.from_file(path, start=start, frames=request.frames,
                              size=(request.width, request.height), seed=seed, label=label,
                              audio=info.has_audio, copy=True, meta=meta)

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        """`call()`, retried on rate limits and transient failures within RETRIES."""
        base = min(max(self.hosted.poll_interval, 0.01), 30.0)
        for attempt in range(RETRIES + 1):
            try:
                return call()
            except RateLimited as exc:
                if attempt == RETRIES:
                    raise RateLimited(f"still rate-limited after {RETRIES} retries ({what}): {exc}") from None
                wait = exc.retry_after if exc.retry_after is not None else backoff(base, attempt)
            except Transient as exc:
                if attempt == RETRIES:
                    raise Transient(f"{what} failed {RETRIES + 1} times: {exc}") from None
                wait = backoff(base, attempt)
            time.sleep(min(wait, MAX_BACKOFF))
        raise AssertionError("unreachable")


def _close(client: Any) -> None:
    client.close()


def backoff(base: float, attempt: int) -> float:
    """Exponential backoff with full jitter: up to base * 2**attempt, at least base/2."""
    return min(MAX_BACKOFF, base * 2 ** attempt) * random.uniform(0.5, 1.0)


def job_summary(job: Job) -> dict[str, Any]:
    """What the journal records of a job: its request, images by digest."""
    import hashlib

    def digest(data: bytes | None) -> str | None:
        return hashlib.sha256(data).hexdigest() if data is not None else None

    return {"prompt": job.prompt, "negative_prompt": job.negative_prompt, "seconds": job.seconds,
            "aspect": job.aspect, "seed": job.seed, "model": job.model, "input": job.input,
            "first_frame": digest(job.first_frame), "last_frame": digest(job.last_frame),
            "references": [digest(r) for r in job.references],
            "size": list(job.size) if job.size is not None else None}


def png(frame: np.ndarray) -> bytes:
    """One uint8 RGB frame as PNG bytes (lossless)."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(frame).save(out, format="PNG")
    return out.getvalue()


def png_file(path: Path) -> bytes:
    """An image file as PNG bytes, upright and RGB."""
    from ...media import read_image

    return png(read_image(path))


def data_uri(data: bytes) -> str:
    """Image bytes as a data URI (PNG or JPEG, by their signature)."""
    import base64

    kind = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def download(url: str, path: Path, *, headers: Mapping[str, str] | None = None) -> None:
    """Streams `url` to `path`, translating failures for the retry loop.

    Raises:
        ResultExpired: 403, 404 or 410: the address no longer serves the video.
        Transient: a 5xx or a dropped connection.
        RateLimited: 429.
    """
    import httpx

    try:
        with _downloads().stream("GET", url, headers=dict(headers or {})) as response:
            check_http(response.status_code, response.headers, "downloading the video")
            if response.status_code in (403, 404, 410):
                raise ResultExpired(f"the video's address answered {response.status_code} "
                                    "(expired or removed)")
            with open(path, "wb") as out:
                for block in response.iter_bytes(1 << 20):
                    out.write(block)
    except httpx.TransportError as exc:
        raise Transient(f"downloading the video: {type(exc).__name__}") from None


def _downloads() -> httpx.Client:
    """One HTTP client for every download of the process (a client per download would
    build a TLS context each time: tens of milliseconds of CPU)."""
    global _DOWNLOADS
    import httpx

    with _DOWNLOADS_LOCK:
        if _DOWNLOADS is None:
            _DOWNLOADS = httpx.Client(follow_redirects=True, timeout=httpx.Timeout(60.0, connect=15.0))
        return _DOWNLOADS


_DOWNLOADS: httpx.Client | None = None
_DOWNLOADS_LOCK = threading.Lock()


def check_http(code: int, headers: Mapping[str, str], what: str, detail: str = "") -> None:
    """Raises the retry loop's error for a 429 or 5xx answer; others pass."""
    if code == 429:
        raise RateLimited(f"{what}: 429 Too Many Requests", retry_after(headers))
    if code >= 500:
        raise Transient(f"{what}: HTTP {code} {detail}".strip())


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), None without one."""
    value = headers.get("retry-after") or headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
