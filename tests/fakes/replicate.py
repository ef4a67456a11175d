"""A fake Replicate API, written from its HTTP reference (replicate.com/docs/reference/http)
and the ``replicate`` SDK's requests.

What it reproduces:
- ``Authorization: Bearer <token>``; anything else is a 401 problem-details body.
- ``POST /v1/models/{owner}/{name}/predictions {input}`` (latest version) and
  ``POST /v1/predictions {version, input}`` (a pinned version), answering 201 with the
  prediction; input validated against each model's published schema (422, "Input
  validation failed", naming the field), unknown model 404, unknown version 422.
- ``GET /v1/predictions/{id}``: ``starting`` -> ``processing`` -> ``succeeded``
  (``output``: one URI, stable for the prediction) | ``failed`` (``error``, moderation in
  Replicate's E005 words) | ``canceled`` | ``aborted`` (a prompt holding ``ABORT_WORD``).
- ``POST /v1/predictions/{id}/cancel``.
- ``POST /v1/files`` (multipart ``content``), whose ``urls.get`` is accepted as an input.
- Images as data URIs or uploaded-file URLs; anything else is a 422.
- Outputs are deleted `url_ttl` seconds after the prediction ends: the URL answers 403
  and the prediction shows ``output: null`` with ``data_removed: true``.
- Image models (FLUX schnell, dev): ``aspect_ratio``, ``seed``, ``num_outputs`` 1-4,
  ``output_format`` webp (the default) | jpg | png, ...; ``output`` is a *list* of
  image URIs at the ratio's 1-megapixel size times `image_scale`; a flagged image
  fails the prediction ("NSFW content detected ...").
- 429 with ``{"detail": "Request was throttled. Your rate limit resets in ~Ns."}`` and
  no Retry-After header (the docs show none).
"""

from __future__ import annotations

import io
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from .service import (
    REFUSED_AT_SUBMIT,
    BadRequest,
    FakeJob,
    FakeService,
    Reply,
    decode_data_uri,
)

ABORT_WORD = "abort-before-start"
MODERATION = ("The input or output was flagged as sensitive. Please try again with different "
              "inputs. (E005)")

IMAGE = "image"
# Each model's input schema as its Replicate page publishes it: field -> allowed
# (a tuple of values, a type, IMAGE for a file URI, or a range).
SCHEMAS: dict[str, dict[str, Any]] = {
    "kwaivgi/kling-v2.1": {
        "required": ("prompt", "start_image"),
        "fields": {"prompt": str, "start_image": IMAGE, "end_image": IMAGE,
                   "mode": ("standard", "pro"), "duration": (5, 10), "negative_prompt": str},
        "defaults": {"duration": 5, "mode": "standard"},
    },
    "minimax/hailuo-02": {
        "required": ("prompt",),
        "fields": {"prompt": str, "first_frame_image": IMAGE, "last_frame_image": IMAGE,
                   "duration": (6, 10), "resolution": ("512p", "768p", "1080p"),
                   "prompt_optimizer": bool},
        "defaults": {"duration": 6, "resolution": "1080p"},
    },
    "wan-video/wan-2.2-i2v-a14b": {
        "required": ("prompt", "image"),
        "fields": {"prompt": str, "image": IMAGE, "num_frames": range(81, 101),
                   "frames_per_second": range(5, 25), "resolution": ("480p", "720p"),
                   "seed": int, "sample_steps": range(1, 51), "sample_shift": (1, 20)},
        "defaults": {"num_frames": 81, "frames_per_second": 16},
    },
}
FLUX_SIZES = {"1:1": (1024, 1024), "16:9": (1344, 768), "21:9": (1536, 640), "3:2": (1216, 832),
              "2:3": (832, 1216), "4:5": (896, 1088), "5:4": (1088, 896), "3:4": (896, 1152),
              "4:3": (1152, 896), "9:16": (768, 1344), "9:21": (640, 1536)}
FLUX_FIELDS = {"prompt": str, "aspect_ratio": tuple(FLUX_SIZES), "seed": int,
               "num_outputs": range(1, 5), "output_format": ("webp", "jpg", "png"),
               "output_quality": range(0, 101), "disable_safety_checker": bool, "go_fast": bool,
               "megapixels": ("1", "0.25")}
SCHEMAS["black-forest-labs/flux-schnell"] = {
    "required": ("prompt",), "kind": "image",
    "fields": {**FLUX_FIELDS, "num_inference_steps": range(1, 5)},
    "defaults": {"aspect_ratio": "1:1", "output_format": "webp", "num_outputs": 1}}
SCHEMAS["black-forest-labs/flux-dev"] = {
    "required": ("prompt",), "kind": "image",
    "fields": {**FLUX_FIELDS, "num_inference_steps": range(1, 51), "guidance": range(0, 11)},
    "defaults": {"aspect_ratio": "1:1", "output_format": "webp", "num_outputs": 1}}
NSFW = "NSFW content detected. Try running it again, or try a different prompt."
GENERIC = {"required": ("prompt",), "fields": {"prompt": str, "image": IMAGE, "duration": int},
           "defaults": {"duration": 5}}


def _problem(status: int, title: str, detail: str) -> Reply:
    return Reply.json(status, {"title": title, "detail": detail, "status": status})


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class FakeReplicate(FakeService):
    """Replicate's predictions and files APIs.

    Args:
        versions: Version id -> model, the versions ``POST /v1/predictions`` knows.
        generic_models: Models outside `SCHEMAS` it hosts, taking prompt/image/duration.
        (the rest as `FakeService`)
    """

    name = "replicate"

    def __init__(self, *args: Any, versions: dict[str, str] | None = None,
                 generic_models: tuple[str, ...] = (), image_scale: float = 0.25, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.image_scale = image_scale
        self.versions = dict(versions or {})
        self.generic_models = generic_models
        self.files: dict[str, bytes] = {}
        self.outputs: dict[str, tuple[str, float]] = {}
        self.bodies: list[dict[str, Any]] = []
        self.cancels: list[str] = []
        self._inject: dict[str, list[int]] = {}
        self.uploads = 0

    # -- HTTP ----------------------------------------------------------------------------

    def fail_next(self, method: str, *codes: int) -> None:
        """Answers the next requests of `method` with these statuses (after auth)."""
        with self.lock:
            self._inject.setdefault(method, []).extend(codes)

    def too_many(self) -> Reply:
        return _problem(429, "Request was throttled",
                        f"Request was throttled. Your rate limit resets in ~{self.retry_after:g}s.")

    def bad_request(self, message: str) -> Reply:
        return _problem(422, "Input validation failed", message)

    def route(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
              body: bytes) -> Reply:
        if headers.get("authorization") not in {f"Bearer {key}" for key in self.keys}:
            return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        with self.lock:
            injected = self._inject.get(method)
            code = injected.pop(0) if injected else None
        if code is not None:
            return Reply.json(code, {"detail": f"injected failure {code}"})
        model_path = re.fullmatch(r"/v1/models/([^/]+)/([^/]+)/predictions", path)
        if method == "POST" and model_path:
            model = f"{model_path.group(1)}/{model_path.group(2)}"
            return self.create(model, f"{model}-latest", _body(body))
        if method == "POST" and path == "/v1/predictions":
            request = _body(body)
            version = request.get("version")
            if version not in self.versions:
                return _problem(422, "Invalid version", "Invalid version or not permitted")
            return self.create(self.versions[version], str(version), request)
        found = re.fullmatch(r"/v1/predictions/([a-z0-9]+)(/cancel)?", path)
        if found and found.group(1) in self.jobs:
            job = self.jobs[found.group(1)]
            if method == "POST" and found.group(2):
                with self.lock:
                    self.cancels.append(job.id)
                    if self.state(job) in ("queued", "running", "throttled"):
                        job.cancelled = True
                return Reply.json(200, self.prediction(job))
            if method == "GET" and not found.group(2):
                return Reply.json(200, self.prediction(job))
        if method == "POST" and path == "/v1/files":
            return self.upload(headers, body)
        file_id = re.fullmatch(r"/v1/files/([a-z0-9]+)", path)
        if method == "GET" and file_id and file_id.group(1) in self.files:
            return Reply(200, self.files[file_id.group(1)], {"Content-Type": "image/png"})
        return _problem(404, "Not found", "The requested resource could not be found.")

    # -- predictions ---------------------------------------------------------------------

    def create(self, model: str, version: str, request: dict[str, Any]) -> Reply:
        schema = SCHEMAS.get(model) or (GENERIC if model in self.generic_models else None)
        if schema is None:
            return _problem(404, "Model not found", f"The model {model} does not exist")
        inputs = request.get("input")
        if not isinstance(inputs, dict) or set(request) - {"input", "version", "webhook",
                                                          "webhook_events_filter", "stream"}:
            raise BadRequest("- body: input is required (and nothing but version, webhook)")
        images = self.validate(model, schema, inputs)
        prompt = inputs.get("prompt")
        if isinstance(prompt, str) and REFUSED_AT_SUBMIT in prompt:
            raise BadRequest("- input.prompt: the prompt was flagged as sensitive (E005)")
        values = {**schema["defaults"], **inputs}
        if schema.get("kind") == "image":
            return self.create_image(model, version, request, inputs, values)
        if "num_frames" in schema["fields"]:
            seconds = values["num_frames"] / values["frames_per_second"]
        else:
            seconds = float(values["duration"])
        first = images.get("start_image") or images.get("first_frame_image") or images.get("image")
        last = images.get("end_image") or images.get("last_frame_image")
        with self.lock:
            self.bodies.append(request)
            number = self.submissions + 1
            job = self.new_job(dict(inputs, _model=model, _version=version), seconds=seconds,
                               aspect=_aspect(first), prompt=prompt, first_frame=first,
                               last_frame=last, seed=int(inputs.get("seed", number)))
            if job.outcome == "failed" and "moderation" in job.reason:
                job.reason = MODERATION
        return Reply.json(201, self.prediction(job))

    def create_image(self, model: str, version: str, request: dict[str, Any],
                     inputs: dict[str, Any], values: dict[str, Any]) -> Reply:
        width, height = FLUX_SIZES[values["aspect_ratio"]]
        with self.lock:
            self.bodies.append(request)
            number = self.submissions + 1
            job = self.new_job(dict(inputs, _model=model, _version=version), seconds=0.0,
                               aspect=(1, 1), prompt=str(inputs["prompt"]),
                               seed=int(inputs.get("seed", number)))
            job.kind = "image"
            job.size = (round(width * self.image_scale), round(height * self.image_scale))
            job.image_format = {"webp": "WEBP", "jpg": "JPEG", "png": "PNG"}[values["output_format"]]
            if job.outcome == "failed" and "moderation" in job.reason:
                job.reason = NSFW
        return Reply.json(201, self.prediction(job))

    def validate(self, model: str, schema: dict[str, Any], inputs: dict[str, Any]) -> dict[str, bytes]:
        """Checks `inputs` against the model's schema; returns the decoded images."""
        images: dict[str, bytes] = {}
        for name in schema["required"]:
            if name not in inputs:
                raise BadRequest(f"- input: {name} is required")
        for name, value in inputs.items():
            allowed = schema["fields"].get(name)
            if allowed is None:
                raise BadRequest(f"- input: Additional property {name} is not allowed")
            if allowed == IMAGE:
                images[name] = self.image(name, value)
            elif isinstance(allowed, type):
                if not isinstance(value, allowed) or (allowed is int and isinstance(value, bool)):
                    raise BadRequest(f"- input.{name}: Invalid type. Expected: {allowed.__name__}")
            elif value not in allowed:
                raise BadRequest(f"- input.{name}: {name} must be one of the following: "
                                 f"{', '.join(map(str, allowed))}")
        if model == "kwaivgi/kling-v2.1" and "end_image" in inputs and inputs.get("mode") != "pro":
            raise BadRequest("- input.end_image: pro mode is required when end_image is set")
        if model == "minimax/hailuo-02" and inputs.get("duration") == 10 \
                and inputs.get("resolution", "1080p") == "1080p":
            raise BadRequest("- input.duration: 10 seconds is only available for 768p resolution")
        return images

    def image(self, name: str, value: Any) -> bytes:
        if not isinstance(value, str):
            raise BadRequest(f"- input.{name}: Invalid type. Expected: string")
        if value.startswith("data:"):
            return decode_data_uri(value)
        uploaded = re.fullmatch(re.escape(self.base_url) + r"/v1/files/([a-z0-9]+)", value)
        if uploaded and uploaded.group(1) in self.files:
            return self.files[uploaded.group(1)]
        raise BadRequest(f"- input.{name}: could not fetch the file at {value[:80]}")

    def state(self, job: FakeJob) -> str:
        found = super().state(job)
        if ABORT_WORD in str(job.params.get("prompt", "")) and found not in ("queued", "throttled"):
            return "aborted"
        return found

    def prediction(self, job: FakeJob) -> dict[str, Any]:
        state = self.state(job)
        names = {"queued": "starting", "throttled": "starting", "running": "processing",
                 "succeeded": "succeeded", "failed": "failed", "cancelled": "canceled",
                 "aborted": "aborted"}
        output, removed = None, False
        if state == "succeeded":
            with self.lock:
                if job.id not in self.outputs:
                    self.outputs[job.id] = (self.result_url(job), time.time() + self.url_ttl)
                url, deleted_at = self.outputs[job.id]
            removed = time.time() > deleted_at
            output = None if removed else url
        inputs = {k: v for k, v in job.params.items() if not k.startswith("_")}
        base = f"{self.base_url}/v1/predictions/{job.id}"
        if output is not None and job.kind == "image":
            output = [output]  # image models answer a list of files
        return {"id": job.id, "model": job.params["_model"], "version": job.params["_version"],
                "input": inputs, "logs": "", "output": output, "data_removed": removed,
                "error": job.reason if state == "failed" else None, "status": names[state],
                "created_at": _now(), "started_at": None, "completed_at": None,
                "metrics": {}, "urls": {"get": base, "cancel": f"{base}/cancel"}}

    # -- files -----------------------------------------------------------------------------

    def upload(self, headers: dict[str, str], body: bytes) -> Reply:
        from email.parser import BytesParser
        from email.policy import HTTP

        kind = headers.get("content-type", "")
        if not kind.startswith("multipart/form-data"):
            raise BadRequest("files must be sent as multipart/form-data")
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {kind}\r\n\r\n".encode() + body)
        parts = {part.get_param("name", header="content-disposition"): part
                 for part in message.iter_parts()}
        content = parts.get("content")
        if content is None:
            raise BadRequest("the multipart body has no 'content' part")
        data = content.get_payload(decode=True)
        with self.lock:
            self.uploads += 1
            file_id = self.new_id()
            self.files[file_id] = data
        return Reply.json(201, {
            "id": file_id, "name": content.get_filename() or "file",
            "content_type": content.get_content_type(), "size": len(data), "etag": file_id,
            "checksums": {}, "metadata": {}, "created_at": _now(), "expires_at": None,
            "urls": {"get": f"{self.base_url}/v1/files/{file_id}"}})


def _body(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value


def _aspect(image: bytes | None) -> tuple[int, int]:
    """The shape the video takes: its first frame's, else 16:9."""
    if image is None:
        return (16, 9)
    from PIL import Image

    with Image.open(io.BytesIO(image)) as picture:
        return picture.size
