"""A fake of Runway's API (docs.dev.runwayml.com, ``runwayml`` 5.x request types).

What it reproduces:
- ``Authorization: Bearer <key>`` (401 otherwise) and a required ``X-Runway-Version:
  2024-11-06`` (400 otherwise); errors as ``{"error": "..."}`` like the API's 400s.
- ``POST /v1/image_to_video`` and ``POST /v1/text_to_video`` validated per model and
  endpoint: model, ``ratio``, ``duration``, ``promptText`` (required where the model
  requires it, at most 1000 characters), ``promptImage`` (a data URI, or a list of
  ``{uri, position}`` with ``last`` only where the model takes it), ``seed`` (0..2**32-1,
  only where taken), ``negativePrompt``, model-specific fields; unknown fields are a
  400. A task is answered ``{"id", "estimatedCost"}``.
- ``GET /v1/tasks/{id}``: PENDING, THROTTLED (beyond `throttle` jobs at once), RUNNING
  with ``progress``, SUCCEEDED with ``output`` (signed addresses that expire), FAILED
  with ``failure`` and ``failureCode`` (``SAFETY.INPUT.TEXT`` for a prompt holding the
  moderation word, ``SAFETY.OUTPUT.VIDEO`` for a flagged seed, ``INTERNAL.BAD_OUTPUT``
  for `fail_every`), CANCELLED; ``DELETE`` cancels a running task (204) and deletes a
  finished one (later 404).
- ``POST /v1/text_to_image`` for gen4_image and gen4_image_turbo: ``promptText``
  (required), ``ratio`` (the resolutions of ``runwayml``'s types), ``seed``,
  ``contentModeration``, ``referenceImages`` (up to three ``{uri, tag}``, required 1-3
  for the turbo model; a data URI up to 5 MB; a tag of 3-16 letters, digits or
  underscores starting with a letter; no two alike); the image is served at the
  ratio's resolution times `image_scale`, its task polled like a video's. The video
  endpoints take no reference field (an unknown key, 400).
- 429 with Retry-After every `rate_limit`-th request (the shared service); injected
  statuses (`fail_next`) and a dropped connection after a POST was accepted
  (`drop_next_post`); the first address of each video already expired
  (`expire_first_url`).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .service import (
    REFUSED_AFTER_RUN,
    REFUSED_AT_SUBMIT,
    BadRequest,
    FakeJob,
    FakeService,
    Reply,
    decode_data_uri,
    parse_aspect,
)

VERSION = "2024-11-06"
GEN4 = ("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672")
VEO = ("1280:720", "720:1280", "1080:1920", "1920:1080")

# endpoint -> model -> what the server accepts (ratios, durations, last frame, seed,
# negativePrompt, promptText required, other fields, credits per second).
ACCEPTS: dict[str, dict[str, dict[str, Any]]] = {
    "image_to_video": {
        "gen4.5": dict(ratios=GEN4, durations=range(2, 11), last=False, seed=True, negative=False,
                       prompt=True, fields={"contentModeration", "outputFormat"}, credits=12),
        "gen4_turbo": dict(ratios=GEN4, durations=(5, 10), last=False, seed=True, negative=False,
                           prompt=False, fields={"contentModeration"}, credits=5),
        "gen3a_turbo": dict(ratios=("1280:768", "768:1280"), durations=(5, 10), last=True,
                            seed=True, negative=False, prompt=True, fields={"contentModeration"},
                            credits=5),
        "veo3": dict(ratios=("1280:720", "720:1280"), durations=(8,), last=False, seed=False,
                     negative=False, prompt=False, fields=set(), credits=40),
        "veo3.1": dict(ratios=VEO, durations=(4, 6, 8), last=True, seed=True, negative=True,
                       prompt=False, fields={"audio"}, credits=40),
        "veo3.1_fast": dict(ratios=VEO, durations=(4, 6, 8), last=True, seed=True, negative=True,
                            prompt=False, fields={"audio"}, credits=15),
    },
    "text_to_video": {
        "gen4.5": dict(ratios=("1280:720", "720:1280"), durations=range(2, 11), seed=True,
                       negative=False, fields={"contentModeration", "outputFormat"}, credits=12),
        "veo3": dict(ratios=("1280:720", "720:1280"), durations=(8,), seed=False, negative=False,
                     fields=set(), credits=40),
        "veo3.1": dict(ratios=VEO, durations=(4, 6, 8), seed=True, negative=True,
                       fields={"audio"}, credits=40),
        "veo3.1_fast": dict(ratios=VEO, durations=(4, 6, 8), seed=True, negative=True,
                            fields={"audio"}, credits=15),
    },
}


IMAGE_RATIOS = ("1024:1024", "1080:1080", "1168:880", "1360:768", "1440:1080", "1080:1440",
                "1808:768", "1920:1080", "1080:1920", "2112:912", "1280:720", "720:1280",
                "720:720", "960:720", "720:960", "1680:720")
# model -> (fewest, most) reference images.
IMAGE_MODELS = {"gen4_image": (0, 3), "gen4_image_turbo": (1, 3)}
TAG = re.compile(r"[A-Za-z][A-Za-z0-9_]{2,15}")


class RunwayService(FakeService):
    """Runway's task API over real HTTP (see the module docstring).

    Attributes:
        bodies: Each accepted POST: (endpoint, parsed body).
        deletes: Task ids a DELETE was received for.
        served: Count of each status served by GET /v1/tasks/{id}.
        versions: The X-Runway-Version header of every API request.
    """

    name = "runway"

    def __init__(self, root: Path, *, expire_first_url: bool = False, image_scale: float = 0.25,
                 **kwargs: Any):
        kwargs.setdefault("keys", ("rw-test-key-0123456789abcdef",))
        super().__init__(root, **kwargs)
        self.image_scale = image_scale
        self.expire_first_url = expire_first_url
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        self.deletes: list[str] = []
        self.served: Counter[str] = Counter()
        self.versions: list[str | None] = []
        self._inject: dict[str, list[int]] = {}
        self._drop_posts = 0
        self._urls: Counter[str] = Counter()
        self._created: dict[str, str] = {}

    # -- fault injection -------------------------------------------------------------------

    def fail_next(self, method: str, *codes: int) -> None:
        """Answers the next requests of `method` with these statuses (after auth)."""
        with self.lock:
            self._inject.setdefault(method, []).extend(codes)

    def drop_next_post(self, count: int = 1) -> None:
        """Accepts the next `count` task POSTs (a task is made and counted) but closes
        the connection instead of answering."""
        with self.lock:
            self._drop_posts += count

    # -- routes ----------------------------------------------------------------------------

    def route(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
              body: bytes) -> Reply:
        with self.lock:
            self.versions.append(headers.get("x-runway-version"))
        if headers.get("authorization") not in {f"Bearer {k}" for k in self.keys}:
            return Reply.json(401, {"error": "The API key you provided is incorrect."})
        if headers.get("x-runway-version") != VERSION:
            return Reply.json(400, {"error": "X-Runway-Version header must be set to a valid "
                                             f"API version (e.g. {VERSION})."})
        with self.lock:
            queue = self._inject.get(method)
            injected = queue.pop(0) if queue else None
        if injected is not None:
            return Reply.json(injected, {"error": f"injected {injected}"})
        if path in ("/v1/image_to_video", "/v1/text_to_video", "/v1/text_to_image"):
            if method != "POST":
                return Reply.json(405, {"error": "Method not allowed"})
            if path == "/v1/text_to_image":
                return self.create_image(headers, body)
            return self.create(path.rsplit("/", 1)[-1], headers, body)
        if path.startswith("/v1/tasks/"):
            task_id = path.removeprefix("/v1/tasks/")
            job = self.jobs.get(task_id)
            if job is None:
                return Reply.json(404, {"error": "Task not found"})
            if method == "GET":
                return Reply.json(200, self.task(job))
            if method == "DELETE":
                with self.lock:
                    self.deletes.append(task_id)
                    if self.state(job) in ("succeeded", "failed", "cancelled"):
                        del self.jobs[task_id]
                    else:
                        job.cancelled = True
                return Reply(204)
            return Reply.json(405, {"error": "Method not allowed"})
        return Reply.json(404, {"error": "Not found"})

    def create(self, endpoint: str, headers: dict[str, str], body: bytes) -> Reply:
        if not headers.get("content-type", "").startswith("application/json"):
            raise BadRequest("Content-Type must be application/json")
        try:
            params = json.loads(body)
        except ValueError:
            raise BadRequest("the body is not valid JSON") from None
        if not isinstance(params, dict):
            raise BadRequest("the body must be a JSON object")
        model = params.get("model")
        accepts = ACCEPTS[endpoint].get(model)  # type: ignore[arg-type]
        if accepts is None:
            raise BadRequest(f"model: Invalid enum value for {endpoint}: {model!r}")
        allowed = {"model", "promptText", "ratio", "duration", "seed"} | accepts["fields"]
        if endpoint == "image_to_video":
            allowed.add("promptImage")
        if accepts["negative"]:
            allowed.add("negativePrompt")
        if not accepts["seed"]:
            allowed.discard("seed")
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise BadRequest(f"Unrecognized key(s) in object: {', '.join(map(repr, unknown))}")
        prompt = params.get("promptText")
        if prompt is not None and (not isinstance(prompt, str) or not prompt
                                   or len(prompt.encode("utf-16-le")) // 2 > 1000):
            raise BadRequest("promptText must be a non-empty string of at most 1000 characters")
        if prompt is None and (endpoint == "text_to_video" or accepts["prompt"]):
            raise BadRequest("promptText: Required")
        if params.get("ratio") not in accepts["ratios"]:
            raise BadRequest(f"ratio: Invalid enum value {params.get('ratio')!r} for {model}")
        duration = params.get("duration")
        if not isinstance(duration, int) or isinstance(duration, bool) or \
                duration not in accepts["durations"]:
            raise BadRequest(f"duration: {duration!r} is not allowed for {model}")
        seed = params.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2 ** 32:
            raise BadRequest("seed must be an integer from 0 to 4294967295")
        first, last = self.images(params.get("promptImage"), endpoint, accepts)
        if prompt and REFUSED_AT_SUBMIT in prompt:
            raise BadRequest("promptText: Invalid input")
        job = self.new_job(params, seconds=float(duration), aspect=parse_aspect(params["ratio"]),
                           prompt=prompt, first_frame=first, last_frame=last, seed=seed)
        if prompt and REFUSED_AFTER_RUN in prompt:
            job.outcome, job.reason = "failed", "SAFETY.INPUT.TEXT"
        elif seed in self.flagged_seeds:
            job.outcome, job.reason = "failed", "SAFETY.OUTPUT.VIDEO"
        elif job.outcome == "failed":
            job.reason = "INTERNAL.BAD_OUTPUT.CODE01"
        with self.lock:
            self.bodies.append((endpoint, params))
            self._created[job.id] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            drop = self._drop_posts > 0
            self._drop_posts -= 1 if drop else 0
        if drop:
            return Reply(0, drop=True)
        return Reply.json(200, {"id": job.id,
                                "estimatedCost": {"credits": accepts["credits"] * duration}})

    def create_image(self, headers: dict[str, str], body: bytes) -> Reply:
        """``POST /v1/text_to_image``, checked as `runwayml`'s request types say."""
        if not headers.get("content-type", "").startswith("application/json"):
            raise BadRequest("Content-Type must be application/json")
        try:
            params = json.loads(body)
        except ValueError:
            raise BadRequest("the body is not valid JSON") from None
        if not isinstance(params, dict):
            raise BadRequest("the body must be a JSON object")
        model = params.get("model")
        if model not in IMAGE_MODELS:
            raise BadRequest(f"model: Invalid enum value for text_to_image: {model!r}")
        allowed = {"model", "promptText", "ratio", "seed", "referenceImages", "contentModeration"}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise BadRequest(f"Unrecognized key(s) in object: {', '.join(map(repr, unknown))}")
        prompt = params.get("promptText")
        if not isinstance(prompt, str) or not prompt or len(prompt.encode("utf-16-le")) // 2 > 1000:
            raise BadRequest("promptText: Required (a non-empty string of at most 1000 characters)")
        if params.get("ratio") not in IMAGE_RATIOS:
            raise BadRequest(f"ratio: Invalid enum value {params.get('ratio')!r} for {model}")
        seed = params.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2 ** 32:
            raise BadRequest("seed must be an integer from 0 to 4294967295")
        references = self.references(params.get("referenceImages", []), *IMAGE_MODELS[model])
        if REFUSED_AT_SUBMIT in prompt:
            raise BadRequest("promptText: Invalid input")
        width, height = parse_aspect(params["ratio"])
        job = self.new_job(params, seconds=0.0, aspect=(16, 9), prompt=prompt, seed=seed)
        job.kind, job.references = "image", references
        job.size = (round(width * self.image_scale), round(height * self.image_scale))
        if prompt and REFUSED_AFTER_RUN in prompt:
            job.outcome, job.reason = "failed", "SAFETY.INPUT.TEXT"
        elif seed in self.flagged_seeds:
            job.outcome, job.reason = "failed", "SAFETY.OUTPUT.IMAGE"
        with self.lock:
            self.bodies.append(("text_to_image", params))
            self._created[job.id] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        return Reply.json(200, {"id": job.id})

    def references(self, value: Any, fewest: int, most: int) -> list[bytes]:
        """The decoded ``referenceImages``."""
        if not isinstance(value, list) or not fewest <= len(value) <= most:
            raise BadRequest(f"referenceImages: an array of {fewest} to {most} images")
        found: list[bytes] = []
        tags: set[str] = set()
        for item in value:
            if not isinstance(item, dict) or not isinstance(item.get("uri"), str) \
                    or set(item) - {"uri", "tag"}:
                raise BadRequest("referenceImages: each entry is {uri, tag?}")
            if len(item["uri"]) > 5 * 1024 * 1024:
                raise BadRequest("referenceImages.uri: a data URI may be at most 5MB")
            tag = item.get("tag")
            if tag is not None and (not isinstance(tag, str) or not TAG.fullmatch(tag) or tag in tags):
                raise BadRequest("referenceImages.tag: 3-16 letters, digits or underscores, "
                                 "starting with a letter, no two alike")
            tags.add(str(tag))
            found.append(decode_data_uri(item["uri"]))
        return found

    def images(self, value: Any, endpoint: str, accepts: dict[str, Any]) -> tuple[bytes | None,
                                                                                   bytes | None]:
        """The first and last frames of a ``promptImage``."""
        if endpoint == "text_to_video":
            return None, None
        if isinstance(value, str):
            return decode_data_uri(value), None
        if not isinstance(value, list) or not value:
            raise BadRequest("promptImage: Required (a URL, a data URI or a list of "
                             "{uri, position})")
        found: dict[str, bytes] = {}
        for item in value:
            if not isinstance(item, dict) or set(item) != {"uri", "position"} \
                    or item["position"] not in ("first", "last") or item["position"] in found:
                raise BadRequest("promptImage: each entry is {uri, position: first|last}, "
                                 "one per position")
            if item["position"] == "last" and not accepts["last"]:
                raise BadRequest(f"promptImage: position 'last' is not supported by "
                                 f"{endpoint} for this model")
            if not isinstance(item["uri"], str):
                raise BadRequest("promptImage.uri must be a string")
            found[item["position"]] = decode_data_uri(item["uri"])
        if "first" not in found:
            raise BadRequest("promptImage: a first frame is required")
        return found["first"], found.get("last")

    def new_id(self) -> str:
        return str(uuid.uuid4())

    # -- tasks -----------------------------------------------------------------------------

    def task(self, job: FakeJob) -> dict[str, Any]:
        state = self.state(job)
        status = {"queued": "PENDING", "throttled": "THROTTLED", "running": "RUNNING",
                  "succeeded": "SUCCEEDED", "failed": "FAILED", "cancelled": "CANCELLED"}[state]
        with self.lock:
            self.served[status] += 1
        credits = int(job.seconds * 5)
        answer: dict[str, Any] = {"id": job.id, "status": status,
                                  "createdAt": self._created.get(job.id, "")}
        if status in ("PENDING", "THROTTLED", "RUNNING"):
            answer["estimatedCost"] = {"credits": credits}
        else:
            answer["cost"] = {"credits": 0 if status == "CANCELLED" else credits}
        if status == "RUNNING":
            age = time.monotonic() - job.created - self.queued
            answer["progress"] = round(min(max(age / self.running, 0.0), 1.0), 3) if self.running else 0.5
        elif status == "SUCCEEDED":
            answer["output"] = [self.result_url(job)]
        elif status == "FAILED":
            answer["failureCode"] = job.reason
            answer["failure"] = ("The prompt text did not pass content moderation."
                                 if job.reason.startswith("SAFETY.INPUT") else
                                 "The output did not pass content moderation."
                                 if job.reason.startswith("SAFETY") else
                                 "An internal error occurred while generating.")
        return answer

    def result_url(self, job: FakeJob) -> str:
        """A signed address; with `expire_first_url`, the first one of each video is
        already past its expiry (a fresh GET of the task signs a good one)."""
        with self.lock:
            self._urls[job.id] += 1
            first = self._urls[job.id] == 1
        if not (self.expire_first_url and first):
            return super().result_url(job)
        expires = time.time() - 5
        token = hashlib.sha256(f"{job.id}:{expires:.3f}".encode()).hexdigest()[:24]
        return f"{self.base_url}/results/{job.id}.mp4?expires={expires:.3f}&sig={token}"
