"""A fake Luma Dream Machine API, written from Luma's published protocol.

- Paths under ``/dream-machine/v1``: ``POST /generations/video`` (what `lumaai` 1.x
  calls) and ``POST /generations`` (the docs' curl examples), ``GET`` and ``DELETE
  /generations/{id}``.
- ``Authorization: Bearer <key>``, else 401 ``{"detail": "Invalid API key provided"}``.
- A generation is ``queued`` → ``dreaming`` → ``completed`` (``assets.video``) or
  ``failed`` (``failure_reason``); a deleted one answers 404.
- Errors are ``{"detail": ...}``; 429s carry Retry-After.
- Strict where the docs are: model, aspect ratio ("1:1", "16:9", "9:16", "4:3", "3:4",
  "21:9", "9:21"), duration ("5s"/"9s"), resolution and keys are checked; a keyframe
  is ``{type: image, url}`` or ``{type: generation, id}``, and an image is an address
  Luma fetches ("upload and use your own cdn image urls, currently this is the only way
  to pass an image"): a data URI is refused, and the fake fetches the address over HTTP
  as Luma's servers would, refusing the request when it does not serve an image.
- The Nth submission (``flagged_seeds``, counted from 1) fails moderation after
  dreaming; a prompt holding REFUSED_AT_SUBMIT is refused at once (400), one holding
  REFUSED_AFTER_RUN fails after dreaming.

- ``POST /generations/image`` (``lumaai`` ``generations.image.create``) for photon-1 and
  photon-flash-1: ``prompt`` (required), ``aspect_ratio``, ``format`` jpg/png,
  ``image_ref`` (up to 4 ``{url, weight?}``), ``style_ref`` (1), ``character_ref``
  (``{identity0: {images: [up to 4 urls]}}``), each address fetched as Luma would;
  no seed, no negative prompt (unknown keys, 400). A completed image generation holds
  ``assets.image`` (a JPEG unless png was asked), sized by the aspect ratio.

`FakeImageHost` is the user's image host: PUT (with a Bearer token) stores an image,
GET serves it publicly.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from .service import REFUSED_AT_SUBMIT, BadRequest, FakeJob, FakeService, Reply, parse_aspect

PREFIX = "/dream-machine/v1"
MODELS = ("ray-2", "ray-flash-2", "ray-1-6")
ASPECTS = ("1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "9:21")
DURATIONS = {"5s": 5.0, "9s": 9.0}
RESOLUTIONS = ("540p", "720p", "1080p", "4k")
IMAGE_MODELS = ("photon-1", "photon-flash-1")
IMAGE_FIELDS = {"model", "prompt", "aspect_ratio", "callback_url", "character_ref", "format",
                "generation_type", "image_ref", "modify_image_ref", "style_ref", "sync",
                "sync_timeout"}
FIELDS = {"model", "prompt", "aspect_ratio", "duration", "resolution", "loop", "keyframes",
          "callback_url", "concepts", "generation_type"}


class FakeLuma(FakeService):
    name = "luma"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.deleted: set[str] = set()
        self.bodies: list[dict[str, Any]] = []
        self.server_errors: list[int] = []  # statuses the next API requests get (5xx faults)
        self.stale_urls = 0  # result addresses handed out already expired

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        with self.lock:
            status = self.server_errors.pop(0) if self.server_errors and \
                not path.startswith("/results/") else None
            if status is not None:
                self.requests.append((method, path))
        if status is not None:
            return Reply.json(status, {"detail": "Internal Server Error"})
        return super().handle(method, path, headers, body)

    def result_url(self, job: FakeJob) -> str:
        with self.lock:
            if not self.stale_urls:
                return super().result_url(job)
            self.stale_urls -= 1
            ttl, self.url_ttl = self.url_ttl, -1.0
            try:
                return super().result_url(job)
            finally:
                self.url_ttl = ttl

    @property
    def api_url(self) -> str:
        """What the engine's ``base_url`` is set to (the SDK's default has this path)."""
        return self.base_url + PREFIX

    def too_many(self) -> Reply:
        return Reply.json(429, {"detail": "Too many requests, please slow down"},
                          **{"Retry-After": f"{self.retry_after:g}"})

    def bad_request(self, message: str) -> Reply:
        return Reply.json(400, {"detail": message})

    def route(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
              body: bytes) -> Reply:
        if not path.startswith(PREFIX + "/"):
            return Reply.json(404, {"detail": "Not Found"})
        path = path[len(PREFIX):]
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[len("Bearer "):] not in self.keys:
            return Reply.json(401, {"detail": "Invalid API key provided"})
        if method == "POST" and path in ("/generations", "/generations/video"):
            return self.create(body)
        if method == "POST" and path == "/generations/image":
            return self.create_image(body)
        if path.startswith("/generations/") and path.count("/") == 2:
            job_id = path.rsplit("/", 1)[-1]
            job = self.jobs.get(job_id)
            if job is None or job_id in self.deleted:
                return Reply.json(404, {"detail": "Generation not found"})
            if method == "GET":
                return Reply.json(200, self.generation(job))
            if method == "DELETE":
                with self.lock:
                    job.cancelled = True
                    self.deleted.add(job_id)
                return Reply(204)
        return Reply.json(404, {"detail": "Not Found"})

    def create(self, body: bytes) -> Reply:
        try:
            params = json.loads(body)
        except ValueError:
            raise BadRequest("body is not JSON") from None
        if not isinstance(params, dict):
            raise BadRequest("body must be a JSON object")
        unknown = sorted(set(params) - FIELDS)
        if unknown:
            raise BadRequest(f"unknown fields: {', '.join(unknown)}")
        if params.get("model") not in MODELS:
            raise BadRequest(f"model must be one of {', '.join(MODELS)}")
        aspect = params.get("aspect_ratio", "16:9")
        if aspect not in ASPECTS:
            raise BadRequest(f"aspect_ratio must be one of {', '.join(ASPECTS)}")
        duration = params.get("duration", "5s")
        if duration not in DURATIONS:
            raise BadRequest("duration must be 5s or 9s")
        if params.get("resolution", "720p") not in RESOLUTIONS:
            raise BadRequest(f"resolution must be one of {', '.join(RESOLUTIONS)}")
        if "loop" in params and not isinstance(params["loop"], bool):
            raise BadRequest("loop must be a boolean")
        prompt = params.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise BadRequest("prompt must be a string")
        keyframes = params.get("keyframes") or {}
        if not isinstance(keyframes, dict) or set(keyframes) - {"frame0", "frame1"}:
            raise BadRequest("keyframes takes frame0 and frame1 only")
        if not prompt and not keyframes:
            raise BadRequest("prompt is required")
        if prompt and REFUSED_AT_SUBMIT in prompt:
            return Reply.json(400, {"detail": "Prompt not allowed because advanced moderation failed"})
        images = {name: self.keyframe(name, frame) for name, frame in keyframes.items()}
        with self.lock:
            self.bodies.append(params)
            number = self.submissions + 1
            job = self.new_job(params, seconds=DURATIONS[duration], aspect=parse_aspect(aspect),
                               prompt=prompt, first_frame=images.get("frame0"),
                               last_frame=images.get("frame1"), seed=number)
        return Reply.json(201, self.generation(job))

    def create_image(self, body: bytes) -> Reply:
        try:
            params = json.loads(body)
        except ValueError:
            raise BadRequest("body is not JSON") from None
        if not isinstance(params, dict):
            raise BadRequest("body must be a JSON object")
        unknown = sorted(set(params) - IMAGE_FIELDS)
        if unknown:
            raise BadRequest(f"unknown fields: {', '.join(unknown)}")
        if params.get("model") not in IMAGE_MODELS:
            raise BadRequest(f"model must be one of {', '.join(IMAGE_MODELS)}")
        aspect = params.get("aspect_ratio", "16:9")
        if aspect not in ASPECTS:
            raise BadRequest(f"aspect_ratio must be one of {', '.join(ASPECTS)}")
        if params.get("format", "jpg") not in ("jpg", "png"):
            raise BadRequest("format must be jpg or png")
        prompt = params.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise BadRequest("prompt is required")
        references = self.image_refs(params)
        if REFUSED_AT_SUBMIT in prompt:
            return Reply.json(400, {"detail": "Prompt not allowed because advanced moderation failed"})
        with self.lock:
            self.bodies.append(params)
            job = self.new_job(params, seconds=0.0, aspect=parse_aspect(aspect), prompt=prompt,
                               seed=self.submissions + 1)
            job.kind, job.references = "image", references
            job.image_format = "PNG" if params.get("format") == "png" else "JPEG"
        return Reply.json(201, self.generation(job))

    def image_refs(self, params: dict[str, Any]) -> list[bytes]:
        """The images of ``image_ref``, ``style_ref`` and ``character_ref``, fetched."""
        found: list[bytes] = []
        for name, most in (("image_ref", 4), ("style_ref", 1)):
            refs = params.get(name)
            if refs is None:
                continue
            if not isinstance(refs, list) or not 1 <= len(refs) <= most:
                raise BadRequest(f"{name} takes 1 to {most} images")
            for i, ref in enumerate(refs):
                if not isinstance(ref, dict) or set(ref) - {"url", "weight"} or "url" not in ref:
                    raise BadRequest(f"{name}[{i}] must be {{url, weight?}}")
                found.append(self.fetch_image(f"{name}[{i}]", ref["url"]))
        character = params.get("character_ref")
        if character is not None:
            images = character.get("identity0", {}).get("images") if isinstance(character, dict) \
                and set(character) == {"identity0"} and isinstance(character["identity0"], dict) \
                else None
            if not isinstance(images, list) or not 1 <= len(images) <= 4:
                raise BadRequest("character_ref must be {identity0: {images: [1 to 4 urls]}}")
            found += [self.fetch_image(f"character_ref.identity0.images[{i}]", url)
                      for i, url in enumerate(images)]
        return found

    def keyframe(self, name: str, frame: Any) -> bytes | None:
        """The image a keyframe names, fetched as Luma would (None for a generation)."""
        if not isinstance(frame, dict) or frame.get("type") not in ("image", "generation"):
            raise BadRequest(f"keyframes.{name} must be {{type: image, url}} or {{type: generation, id}}")
        if frame["type"] == "generation":
            ref = self.jobs.get(str(frame.get("id")))
            if ref is None or self.state(ref) != "succeeded":
                raise BadRequest(f"keyframes.{name}: no completed generation {frame.get('id')}")
            return None
        return self.fetch_image(f"keyframes.{name}", frame.get("url"))

    def fetch_image(self, name: str, url: Any) -> bytes:
        """The image at `url`, fetched as Luma's servers would."""
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise BadRequest(f"{name}.url must be an image URL Luma can fetch "
                             "(data URIs and uploads are not accepted)")
        try:
            response = httpx.get(url, timeout=5.0)
        except httpx.HTTPError:
            raise BadRequest(f"{name}: could not fetch {url}") from None
        image = response.content
        if response.status_code != 200 or not (image.startswith(b"\x89PNG") or image.startswith(b"\xff\xd8")):
            raise BadRequest(f"{name}: {url} did not serve an image (HTTP {response.status_code})")
        return image

    def generation(self, job: FakeJob) -> dict[str, Any]:
        state = self.state(job)
        named = {"queued": "queued", "throttled": "queued", "running": "dreaming",
                 "succeeded": "completed", "failed": "failed"}.get(state, "failed")
        age = time.monotonic() - job.created
        created = datetime.fromtimestamp(time.time() - age, UTC).isoformat()
        return {
            "id": job.id, "state": named, "created_at": created,
            "failure_reason": job.reason if named == "failed" else None,
            "model": job.params.get("model"),
            "assets": ({"video": None, "image": self.result_url(job), "progress_video": None}
                       if job.kind == "image" else
                       {"video": self.result_url(job), "image": None, "progress_video": None})
            if named == "completed" else None,
            "generation_type": job.kind,
            "request": {"generation_type": job.kind, **job.params},
        }

    def new_id(self) -> str:
        import uuid

        return str(uuid.uuid4())


class FakeImageHost(FakeService):
    """The user's image host: ``PUT /frames/{name}`` with ``Authorization: Bearer
    <token>`` stores the body; ``GET /frames/{name}`` serves it to anyone."""

    name = "image-host"

    def __init__(self, *args: Any, token: str | None = "host-token", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.token = token
        self.images: dict[str, bytes] = {}
        self.uploads = 0

    def template(self) -> str:
        return self.base_url + "/frames/{name}"

    def route(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
              body: bytes) -> Reply:
        if not path.startswith("/frames/"):
            return Reply(404)
        name = path[len("/frames/"):]
        if method == "PUT":
            if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
                return Reply(403, b"AccessDenied")
            with self.lock:
                self.images[name] = body
                self.uploads += 1
            return Reply(201)
        if method == "GET" and name in self.images:
            return Reply(200, self.images[name], {"Content-Type": "image/png"})
        return Reply(404)
