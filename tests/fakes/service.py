"""What every fake provider shares: a real HTTP server on 127.0.0.1 with jobs that take
time, rate limits, failures, moderation, expiring result addresses and a count of
submissions. Each provider's module (``tests/fakes/<provider>.py``) adds its routes,
auth scheme and wire format on top, written from the provider's published protocol.

The fakes are strict where the real services are: a request without the right key is a
401, a malformed body a 400 (or 422) naming the field, a result address past its expiry
a 403. They serve real mp4 files made with ffmpeg: testsrc2 at the provider's native
size and rate for the asked duration; a job given a first frame starts on that picture
(scaled to the native size), so continuity can be checked on the output.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from stitchcraft.media import run_ffmpeg

# Words in a prompt that make the fakes' moderation refuse or fail the job.
REFUSED_AT_SUBMIT = "forbidden-at-submit"
REFUSED_AFTER_RUN = "forbidden"


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Close the connection without answering (the request was read and acted on): what
    # a client sees when a connection drops after its request reached the provider.
    drop: bool = False

    @classmethod
    def json(cls, status: int, value: Any, **headers: str) -> Reply:
        return cls(status, json.dumps(value).encode(), {"Content-Type": "application/json", **headers})


@dataclass
class FakeJob:
    """One job at a fake provider.

    Attributes:
        id: The provider's job id.
        params: What was asked (the parsed request body).
        created: When it was accepted (monotonic seconds).
        seconds: Duration of the video to make.
        size: (width, height) of the video.
        first_frame: PNG/JPEG bytes it starts from, if any.
        last_frame: Bytes of a frame it should end on, if any.
        outcome: ``succeeded``, or ``failed`` with `reason` (moderation after running).
        cancelled: Cancelled by the client.
        video: The finished file, once made (for an image job, the image).
        kind: ``video``, or ``image`` for an image job (`make_image`).
        image_format: PIL's name of the format an image job is served in.
        references: The reference images the job was given, as received.
        flagged: An image job whose result the provider's safety checker blacks out
            (returned, not failed: fal's way).
    """

    id: str
    params: dict[str, Any]
    created: float
    seconds: float
    size: tuple[int, int]
    first_frame: bytes | None = None
    last_frame: bytes | None = None
    outcome: str = "succeeded"
    reason: str = ""
    cancelled: bool = False
    video: Path | None = None
    seed: int = 0
    kind: str = "video"
    image_format: str = "PNG"
    references: list[bytes] = field(default_factory=list)
    flagged: bool = False


class FakeService:
    """A fake provider API over real HTTP. Subclasses implement `route`.

    Args:
        root: Folder for the videos it makes and serves.
        keys: Accepted credentials (a subclass decides how they are presented).
        queued, running: Seconds a job spends in each state before it ends.
        rate_limit: Every Nth request is answered 429 with Retry-After (0: never).
        retry_after: Seconds the 429 asks the client to wait.
        throttle: Jobs beyond this many running at once stay in the provider's
            "throttled"/queued state (0: no limit).
        url_ttl: Seconds a result address serves its video.
        fail_every: Every Nth job fails with an internal error (0: never).
        fps: The native frame rate of the videos.
        height: The native height of 16:9 videos (others keep the area).
        flagged_seeds: Jobs with these seeds fail moderation after running (for
            providers without a seed, the Nth submission, counted from 1).
    """

    name = "fake"

    def __init__(self, root: Path, *, keys: tuple[str, ...] = ("test-key",), queued: float = 0.2,
                 running: float = 0.4, rate_limit: int = 0, retry_after: float = 0.2,
                 throttle: int = 0, url_ttl: float = 60.0, fail_every: int = 0, fps: int = 24,
                 height: int = 144, flagged_seeds: tuple[int, ...] = ()):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keys = keys
        self.queued, self.running = queued, running
        self.rate_limit, self.retry_after = rate_limit, retry_after
        self.throttle = throttle
        self.url_ttl = url_ttl
        self.fail_every = fail_every
        self.fps, self.height = fps, height
        self.flagged_seeds = set(flagged_seeds)
        self.image_block = 8  # pixels per colour block of an image job's picture
        self.jobs: dict[str, FakeJob] = {}
        self.submissions = 0
        self.requests: list[tuple[str, str]] = []
        self.rate_limited = 0
        self.downloads = 0
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._count = 0

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                reply = service.handle(method, self.path, dict(self.headers.items()), body)
                if reply.drop:
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(reply.body)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

            def do_PUT(self) -> None:
                self._serve("PUT")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        server = self._server  # polled often, so that `stop` returns at once
        threading.Thread(target=lambda: server.serve_forever(poll_interval=0.02), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeService:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- request handling ----------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        parts = urlsplit(path)
        with self.lock:
            self.requests.append((method, parts.path))
            self._count += 1
            count = self._count
        if parts.path.startswith("/results/"):
            return self.serve_result(parts.path, parse_qs(parts.query))
        if self.rate_limit and count % self.rate_limit == 0:
            with self.lock:
                self.rate_limited += 1
            return self.too_many()
        try:
            return self.route(method, parts.path, parse_qs(parts.query), _lower(headers), body)
        except BadRequest as exc:
            return self.bad_request(str(exc))

    def route(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
              body: bytes) -> Reply:
        raise NotImplementedError

    def too_many(self) -> Reply:
        return Reply.json(429, {"error": "Too Many Requests"},
                          **{"Retry-After": f"{self.retry_after:g}"})

    def bad_request(self, message: str) -> Reply:
        return Reply.json(400, {"error": message})

    # -- jobs ------------------------------------------------------------------------------

    def new_job(self, params: dict[str, Any], *, seconds: float, aspect: tuple[int, int],
                prompt: str | None, first_frame: bytes | None = None,
                last_frame: bytes | None = None, seed: int = 0) -> FakeJob:
        """Accepts a job (counted as a submission): it fails after running when its
        prompt holds REFUSED_AFTER_RUN, or when it is the fail_every-th job."""
        with self.lock:
            self.submissions += 1
            job = FakeJob(id=self.new_id(), params=params, created=time.monotonic(), seconds=seconds,
                          size=self.native_size(aspect), first_frame=first_frame,
                          last_frame=last_frame, seed=seed)
            if (prompt and REFUSED_AFTER_RUN in prompt) or seed in self.flagged_seeds:
                job.outcome, job.reason = "failed", "The output was flagged by content moderation."
            elif self.fail_every and self.submissions % self.fail_every == 0:
                job.outcome, job.reason = "failed", "An internal error occurred while generating."
            self.jobs[job.id] = job
            return job

    def new_id(self) -> str:
        return secrets.token_hex(12)

    def native_size(self, aspect: tuple[int, int]) -> tuple[int, int]:
        """The video size for an aspect ratio: `height` for 16:9, the same area else,
        both even."""
        w, h = aspect
        area = self.height * self.height * 16 / 9
        height = (area * h / w) ** 0.5
        width = height * w / h
        return (int(round(width / 2)) * 2, int(round(height / 2)) * 2)

    def state(self, job: FakeJob) -> str:
        """``queued``, ``throttled``, ``running``, ``succeeded``, ``failed`` or
        ``cancelled``, by the job's age (and, with `throttle`, the jobs ahead of it)."""
        if job.cancelled:
            return "cancelled"
        age = time.monotonic() - job.created
        if self.throttle:
            with self.lock:
                ahead = [j for j in self.jobs.values() if j.created < job.created and not j.cancelled
                         and time.monotonic() - j.created < self.queued + self.running]
            if len(ahead) >= self.throttle:
                return "throttled"
        if age < self.queued:
            return "queued"
        if age < self.queued + self.running:
            return "running"
        if job.outcome == "succeeded" and job.video is None:
            self.make_video(job)
        return job.outcome

    def make_image(self, job: FakeJob) -> Path:
        """An image job's picture at `job.size`: blocks of `image_block` pixels, each a
        colour drawn from the seed (so candidates differ and every crop is visible);
        black when the job is `flagged`."""
        import numpy as np
        from PIL import Image

        width, height = job.size
        rng = np.random.default_rng(job.seed)
        block = self.image_block
        colours = rng.integers(0, 256, (-(-height // block), -(-width // block), 3), dtype=np.uint8)
        picture = np.repeat(np.repeat(colours, block, axis=0), block, axis=1)[:height, :width]
        if job.flagged:
            picture = np.zeros_like(picture)
        suffix = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}[job.image_format]
        path = self.root / f"{job.id}.{suffix}"
        Image.fromarray(np.ascontiguousarray(picture)).save(path, format=job.image_format)
        job.video = path
        return path

    def make_video(self, job: FakeJob) -> Path:
        """The job's video: testsrc2 whose hue turns with the seed, starting on the
        first frame when given; 440 Hz tone; native size and rate. An image job gets
        its picture instead (`make_image`)."""
        if job.kind == "image":
            return self.make_image(job)
        width, height = job.size
        path = self.root / f"{job.id}.mp4"
        args: list[str] = []
        hue = (job.seed * 37) % 360
        if job.first_frame is not None:
            image = self.root / f"{job.id}-first.png"
            image.write_bytes(job.first_frame)
            args += ["-loop", "1", "-framerate", str(self.fps), "-i", str(image)]
            video = (f"[0:v]scale={width}:{height},setsar=1,format=rgb24,"
                     f"hue=h=t*40:s=1,format=yuv420p[v]")
        else:
            args += ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={self.fps}"]
            video = f"[0:v]hue=h={hue},format=yuv420p[v]"
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                 "-filter_complex", video, "-map", "[v]", "-map", "1:a", "-t", f"{job.seconds:g}",
                 "-r", str(self.fps), "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12",
                 "-c:a", "aac", "-shortest", str(path)]
        run_ffmpeg(args, what=f"fake {self.name} video")
        job.video = path
        return path

    # -- result addresses ----------------------------------------------------------------

    def served(self, job: FakeJob) -> bytes:
        """The bytes the job's result address serves (its video, or its image)."""
        assert job.video is not None
        return job.video.read_bytes()

    def result_url(self, job: FakeJob) -> str:
        """A signed address that serves the job's video for `url_ttl` seconds."""
        expires = time.time() + self.url_ttl
        token = hashlib.sha256(f"{job.id}:{expires:.3f}".encode()).hexdigest()[:24]
        return f"{self.base_url}/results/{job.id}.mp4?expires={expires:.3f}&sig={token}"

    def serve_result(self, path: str, query: dict[str, list[str]]) -> Reply:
        job_id = path.rsplit("/", 1)[-1].removesuffix(".mp4")
        job = self.jobs.get(job_id)
        try:
            expires = float(query["expires"][0])
            signature = query["sig"][0]
        except (KeyError, ValueError):
            return Reply(403, b"<Error><Code>AccessDenied</Code></Error>")
        expected = hashlib.sha256(f"{job_id}:{expires:.3f}".encode()).hexdigest()[:24]
        if job is None or job.video is None or signature != expected:
            return Reply(404, b"<Error><Code>NoSuchKey</Code></Error>")
        if time.time() > expires:
            return Reply(403, b"<Error><Code>AccessDenied</Code><Message>Request has expired"
                              b"</Message></Error>")
        with self.lock:
            self.downloads += 1
        kind = {".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp"}.get(
            job.video.suffix, "video/mp4")
        return Reply(200, job.video.read_bytes(), {"Content-Type": kind})


class BadRequest(Exception):
    """A request the fake rejects with 400 (or the provider's own validation status)."""


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def parse_aspect(value: str, separator: str = ":") -> tuple[int, int]:
    w, _, h = value.partition(separator)
    return int(w), int(h)


def decode_data_uri(value: str) -> bytes:
    """The bytes of a ``data:image/...;base64,`` URI.

    Raises:
        BadRequest: not a base64 image data URI.
    """
    import base64
    import binascii

    head, _, payload = value.partition(",")
    if not (head.startswith("data:image/") and head.endswith(";base64")):
        raise BadRequest("image must be an https URL or a base64 data URI")
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise BadRequest("image data URI is not valid base64") from None
