"""A fake fal queue API, written from fal's queue documentation (fal.ai/docs, "Queue")
and fal-client 1.0's requests.

What it reproduces:
- ``Authorization: Key <key>``; anything else is a 401.
- ``POST /{app}`` with the model's input as the body: 200 ``{request_id, status_url,
  response_url, cancel_url, queue_position}``, the addresses under the app's
  ``{owner}/{alias}`` only (``/fal-ai/kling-video/requests/{id}``), as fal gives them.
  The input is validated against each app's published schema: 422 with
  ``detail: [{loc, msg, type}]``; an unknown app is a 404.
- ``GET .../requests/{id}/status``: ``IN_QUEUE`` (``queue_position``) -> ``IN_PROGRESS``
  (``logs``) -> ``COMPLETED``; an internal failure shows ``error``/``error_type`` there.
- ``GET .../requests/{id}``: the result ``{"video": {"url", ...}}``; 400 while the request
  runs; a moderation failure answers 422 with a ``content_policy_violation`` detail.
- ``PUT .../requests/{id}/cancel``: 202 ``CANCELLATION_REQUESTED``, or 400
  ``ALREADY_COMPLETED``.
- Images as data URIs (fal accepts them wherever it takes a file URL).
- Image apps (FLUX schnell, dev): ``image_size`` an enum name or ``{width, height}``
  (1..14142), ``seed``, ``num_images`` 1-4, ``num_inference_steps``,
  ``enable_safety_checker``, ``output_format`` jpeg|png (jpeg by default); the result is
  ``{images: [{url, width, height, content_type}], seed, has_nsfw_concepts, timings,
  prompt}``. A flagged image (the Nth request in ``flagged_seeds``, or a prompt holding
  REFUSED_AFTER_RUN) comes back *completed*, black, with ``has_nsfw_concepts: [true]``
  while the safety checker is on, as fal's FLUX apps do.
- Result URLs are stable for the request and stop serving after `url_ttl`.
- 429 with Retry-After.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

from .service import REFUSED_AT_SUBMIT, BadRequest, FakeJob, FakeService, Reply, decode_data_uri

IMAGE = "image"
SCHEMAS: dict[str, dict[str, Any]] = {
    "fal-ai/kling-video/v2.1/standard/image-to-video": {
        "required": ("prompt", "image_url"),
        "fields": {"prompt": str, "image_url": IMAGE, "duration": ("5", "10"),
                   "negative_prompt": str, "cfg_scale": (0.0, 1.0)},
        "defaults": {"duration": "5"},
    },
    "fal-ai/minimax/hailuo-02/standard/image-to-video": {
        "required": ("prompt", "image_url"),
        "fields": {"prompt": str, "image_url": IMAGE, "end_image_url": IMAGE,
                   "duration": ("6", "10"), "prompt_optimizer": bool,
                   "resolution": ("512P", "768P")},
        "defaults": {"duration": "6"},
    },
    "fal-ai/wan/v2.2-a14b/image-to-video": {
        "required": ("prompt", "image_url"),
        "fields": {"prompt": str, "image_url": IMAGE, "end_image_url": IMAGE,
                   "num_frames": range(17, 162), "frames_per_second": range(4, 61),
                   "seed": int, "negative_prompt": str,
                   "aspect_ratio": ("auto", "16:9", "9:16", "1:1"),
                   "resolution": ("480p", "580p", "720p"), "num_inference_steps": range(2, 41),
                   "enable_safety_checker": bool, "enable_prompt_expansion": bool,
                   "guidance_scale": (1.0, 10.0), "shift": (1.0, 10.0)},
        "defaults": {"num_frames": 81, "frames_per_second": 16},
    },
}
SIZE = "image_size"
SIZE_NAMES = {"square_hd": (1024, 1024), "square": (512, 512), "portrait_4_3": (768, 1024),
              "portrait_16_9": (576, 1024), "landscape_4_3": (1024, 768),
              "landscape_16_9": (1024, 576)}
IMAGE_COMMON = {"prompt": str, "image_size": SIZE, "seed": int, "num_images": range(1, 5),
                "enable_safety_checker": bool, "output_format": ("jpeg", "png"),
                "sync_mode": bool, "acceleration": ("none", "regular", "high")}
IMAGE_SCHEMAS: dict[str, dict[str, Any]] = {
    "fal-ai/flux/schnell": {"required": ("prompt",), "kind": "image",
                            "fields": {**IMAGE_COMMON, "num_inference_steps": range(1, 13)},
                            "defaults": {"image_size": "landscape_4_3"}},
    "fal-ai/flux/dev": {"required": ("prompt",), "kind": "image",
                        "fields": {**IMAGE_COMMON, "num_inference_steps": range(1, 51),
                                   "guidance_scale": (1.0, 20.0)},
                        "defaults": {"image_size": "landscape_4_3"}},
}
SCHEMAS.update(IMAGE_SCHEMAS)
GENERIC = {"required": ("prompt",), "fields": {"prompt": str, "image_url": IMAGE, "duration": str},
           "defaults": {"duration": "5"}}


def _invalid(field: str, message: str, kind: str = "value_error") -> BadRequest:
    return BadRequest(json.dumps([{"loc": ["body", field], "msg": message, "type": kind}]))


class FakeFal(FakeService):
    """fal's queue API for a few apps.

    Args:
        generic_apps: Apps outside `SCHEMAS` it hosts, taking prompt/image_url/duration.
        (the rest as `FakeService`)
    """

    name = "fal"

    def __init__(self, *args: Any, generic_apps: tuple[str, ...] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.generic_apps = generic_apps
        self.bodies: list[dict[str, Any]] = []
        self.cancels: list[str] = []
        self._inject: dict[str, list[int]] = {}
        self.outputs: dict[str, str] = {}

    def fail_next(self, method: str, *codes: int) -> None:
        """Answers the next requests of `method` with these statuses (after auth)."""
        with self.lock:
            self._inject.setdefault(method, []).extend(codes)

    def too_many(self) -> Reply:
        return Reply.json(429, {"detail": "Too many concurrent requests"},
                          **{"Retry-After": f"{self.retry_after:g}"})

    def bad_request(self, message: str) -> Reply:
        try:
            detail = json.loads(message)
        except ValueError:
            detail = message
        return Reply.json(422, {"detail": detail})

    def route(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
              body: bytes) -> Reply:
        if headers.get("authorization") not in {f"Key {key}" for key in self.keys}:
            return Reply.json(401, {"detail": "Invalid Key header: no user found for this key"})
        with self.lock:
            injected = self._inject.get(method)
            code = injected.pop(0) if injected else None
        if code is not None:
            return Reply.json(code, {"detail": f"injected failure {code}"})
        found = re.fullmatch(r"/([^/]+/[^/]+)/requests/([0-9a-f]+)(/status|/cancel)?", path)
        if found:
            job = self.jobs.get(found.group(2))
            if job is None or job.params["_app"].split("/")[:2] != found.group(1).split("/"):
                return Reply.json(404, {"detail": "Request not found"})
            if method == "GET" and found.group(3) == "/status":
                return self.status(job)
            if method == "GET" and found.group(3) is None:
                return self.result(job)
            if method == "PUT" and found.group(3) == "/cancel":
                return self.cancel(job)
            return Reply.json(405, {"detail": "Method Not Allowed"})
        app = path.strip("/")
        if method == "POST":
            schema = SCHEMAS.get(app) or (GENERIC if app in self.generic_apps else None)
            if schema is None:
                return Reply.json(404, {"detail": f"Application '{app}' not found"})
            return self.submit(app, schema, _body(body))
        return Reply.json(404, {"detail": "Not Found"})

    def addresses(self, job: FakeJob) -> dict[str, str]:
        owner, alias = job.params["_app"].split("/")[:2]
        base = f"{self.base_url}/{owner}/{alias}/requests/{job.id}"
        return {"status_url": f"{base}/status", "response_url": base, "cancel_url": f"{base}/cancel"}

    def submit(self, app: str, schema: dict[str, Any], inputs: dict[str, Any]) -> Reply:
        images = self.validate(schema, inputs)
        prompt = inputs.get("prompt")
        if isinstance(prompt, str) and REFUSED_AT_SUBMIT in prompt:
            raise _invalid("prompt", "The prompt was flagged by the content checker",
                           "content_policy_violation")
        values = {**schema["defaults"], **inputs}
        if schema.get("kind") == "image":
            return self.submit_image(app, inputs, values)
        if "num_frames" in schema["fields"]:
            seconds = values["num_frames"] / values["frames_per_second"]
        else:
            seconds = float(values["duration"])
        with self.lock:
            self.bodies.append(inputs)
            number = self.submissions + 1
            job = self.new_job(dict(inputs, _app=app), seconds=seconds,
                               aspect=_aspect(images.get("image_url")), prompt=prompt,
                               first_frame=images.get("image_url"),
                               last_frame=images.get("end_image_url"),
                               seed=int(inputs.get("seed", number)))
        return Reply.json(200, {"request_id": job.id, **self.addresses(job), "queue_position": 0})

    def validate(self, schema: dict[str, Any], inputs: dict[str, Any]) -> dict[str, bytes]:
        images: dict[str, bytes] = {}
        for name in schema["required"]:
            if name not in inputs:
                raise _invalid(name, "field required", "missing")
        for name, value in inputs.items():
            allowed = schema["fields"].get(name)
            if allowed is None:
                raise _invalid(name, "extra fields not permitted", "extra_forbidden")
            if allowed == IMAGE:
                if not isinstance(value, str):
                    raise _invalid(name, "Input should be a valid string", "string_type")
                images[name] = decode_data_uri(value)
            elif allowed == SIZE:
                _image_size(value)
            elif isinstance(allowed, type):
                if not isinstance(value, allowed) or (allowed is int and isinstance(value, bool)):
                    raise _invalid(name, f"Input should be a valid {allowed.__name__}", "type_error")
            elif isinstance(allowed, tuple) and len(allowed) == 2 and isinstance(allowed[0], float):
                if not isinstance(value, int | float) or not allowed[0] <= value <= allowed[1]:
                    raise _invalid(name, f"Input should be between {allowed[0]} and {allowed[1]}")
            elif value not in allowed:
                shown = ", ".join(f"'{v}'" for v in allowed) if isinstance(allowed, tuple) \
                    else f"{allowed.start}..{allowed.stop - 1}"
                raise _invalid(name, f"Input should be {shown}", "enum")
        return images

    def submit_image(self, app: str, inputs: dict[str, Any], values: dict[str, Any]) -> Reply:
        prompt = str(inputs["prompt"])
        with self.lock:
            self.bodies.append(inputs)
            number = self.submissions + 1
            job = self.new_job(dict(inputs, _app=app), seconds=0.0, aspect=(1, 1), prompt=prompt,
                               seed=int(inputs.get("seed", number)))
            job.kind, job.size = "image", _image_size(values["image_size"])
            job.image_format = "PNG" if values.get("output_format") == "png" else "JPEG"
            if job.outcome == "failed" and "moderation" in job.reason \
                    and values.get("enable_safety_checker", True):
                job.outcome, job.reason, job.flagged = "succeeded", "", True
        return Reply.json(200, {"request_id": job.id, **self.addresses(job), "queue_position": 0})

    def status(self, job: FakeJob) -> Reply:
        state = self.state(job)
        body: dict[str, Any] = {"request_id": job.id, **self.addresses(job)}
        if state in ("queued", "throttled"):
            with self.lock:
                ahead = sum(1 for j in self.jobs.values() if j.created < job.created
                            and self.state(j) in ("queued", "throttled"))
            body.update(status="IN_QUEUE", queue_position=ahead)
        elif state == "running":
            body.update(status="IN_PROGRESS", logs=[{"message": "generating", "level": "INFO"}])
        else:
            body.update(status="COMPLETED", logs=[], metrics={"inference_time": job.seconds})
            if state == "failed" and "moderation" not in job.reason:
                body.update(error=job.reason, error_type="runner_error")
            if state == "cancelled":
                body.update(error="Request was cancelled", error_type="request_cancelled")
        return Reply.json(200, body)

    def result(self, job: FakeJob) -> Reply:
        state = self.state(job)
        if state in ("queued", "throttled", "running"):
            return Reply.json(400, {"detail": "Request is still in progress"})
        if state == "failed":
            if "moderation" in job.reason:
                return Reply.json(422, {"detail": [{
                    "loc": ["body"], "msg": "The content could not be processed because it "
                                            "contained material flagged by a content checker.",
                    "type": "content_policy_violation"}]},
                    **{"X-Fal-Error-Type": "content_policy_violation"})
            return Reply.json(500, {"detail": job.reason})
        if state == "cancelled":
            return Reply.json(400, {"detail": "Request was cancelled"})
        with self.lock:
            url = self.outputs.setdefault(job.id, self.result_url(job))
        assert job.video is not None
        if job.kind == "image":
            kind = "image/png" if job.image_format == "PNG" else "image/jpeg"
            return Reply.json(200, {"images": [{"url": url, "width": job.size[0],
                                                "height": job.size[1], "content_type": kind}],
                                    "seed": job.seed, "has_nsfw_concepts": [job.flagged],
                                    "timings": {"inference": 0.1}, "prompt": job.params["prompt"]})
        return Reply.json(200, {"video": {"url": url, "content_type": "video/mp4",
                                          "file_name": "output.mp4",
                                          "file_size": job.video.stat().st_size},
                                "seed": job.seed})

    def cancel(self, job: FakeJob) -> Reply:
        with self.lock:
            self.cancels.append(job.id)
            if self.state(job) in ("queued", "throttled", "running"):
                job.cancelled = True
                return Reply.json(202, {"status": "CANCELLATION_REQUESTED"})
        return Reply.json(400, {"status": "ALREADY_COMPLETED"})


def _image_size(value: Any) -> tuple[int, int]:
    """The (width, height) an ``image_size`` names (an enum name or {width, height})."""
    if isinstance(value, str) and value in SIZE_NAMES:
        return SIZE_NAMES[value]
    if isinstance(value, dict) and set(value) == {"width", "height"} and all(
            isinstance(value[k], int) and not isinstance(value[k], bool) and 1 <= value[k] <= 14142
            for k in ("width", "height")):
        return value["width"], value["height"]
    raise _invalid("image_size", "Input should be one of the size names or {width, height} "
                                 "from 1 to 14142", "union_tag_invalid")


def _body(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        raise _invalid("body", "Invalid JSON", "json_invalid") from None
    if not isinstance(value, dict):
        raise _invalid("body", "Input should be a valid dictionary", "dict_type")
    return value


def _aspect(image: bytes | None) -> tuple[int, int]:
    if image is None:
        return (16, 9)
    from PIL import Image

    with Image.open(io.BytesIO(image)) as picture:
        return picture.size
