"""A fake of the Gemini API's Veo endpoints, as the `google-genai` client speaks them.

Written from the client's source (google-genai 2.x `_GenerateVideosParameters_to_mldev`,
`_GenerateVideosOperation_from_mldev`, `Files.download`) and the Gemini API's Veo guide:

- ``POST /v1beta/models/{model}:predictLongRunning`` with ``{instances: [one instance],
  parameters}`` answers ``{name: "models/{model}/operations/{id}"}``;
- ``GET /v1beta/models/{model}/operations/{id}`` answers ``{name}`` until done, then
  ``{name, done: true, response: {"@type", generateVideoResponse: {generatedSamples:
  [{video: {uri}}]}}}``, or ``raiMediaFilteredCount``/``raiMediaFilteredReasons`` and no
  sample for a video the safety filters withheld, or ``error`` (a ``google.rpc.Status``);
- ``GET /v1beta/files/{id}:download?alt=media`` redirects to the bytes; a file past its
  retention answers 403 PERMISSION_DENIED, as Google does for a file it no longer has.

The key is the ``x-goog-api-key`` header (or ``?key=``): none is 403 PERMISSION_DENIED,
a wrong one 400 INVALID_ARGUMENT with ``ErrorInfo`` reason ``API_KEY_INVALID``. Errors
are ``{"error": {code, message, status, details}}``; a rate limit is 429
RESOURCE_EXHAUSTED with a ``RetryInfo`` delay and no Retry-After header. Requests are
checked strictly: an unknown field, a duration or ratio the model does not make, a last
frame without a first frame, reference images on a model without them are 400s naming
the field. There is no documented cancel for video operations: ``...:cancel`` is a 404
(counted in `cancels`, so a test sees that the engine tried).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .service import (
    REFUSED_AT_SUBMIT,
    BadRequest,
    FakeJob,
    FakeService,
    Reply,
    parse_aspect,
)

PUBLIC_HOST = "https://generativelanguage.googleapis.com"


@dataclass(frozen=True)
class FakeModel:
    durations: tuple[int, ...]
    last_frame: bool
    references: bool
    resolutions: tuple[str, ...]


MODELS = {
    "veo-3.1-generate-preview": FakeModel((4, 6, 8), True, True, ("720p", "1080p", "4k")),
    "veo-3.1-generate-001": FakeModel((4, 6, 8), True, True, ("720p", "1080p", "4k")),
    "veo-3.1-fast-generate-preview": FakeModel((4, 6, 8), True, False, ("720p", "1080p", "4k")),
    "veo-3.1-fast-generate-001": FakeModel((4, 6, 8), True, False, ("720p", "1080p", "4k")),
    "veo-3.0-generate-001": FakeModel((4, 6, 8), False, False, ("720p", "1080p")),
    "veo-3.0-fast-generate-001": FakeModel((4, 6, 8), False, False, ("720p", "1080p")),
    "veo-2.0-generate-001": FakeModel((5, 6, 8), False, False, ()),
}

INSTANCE_FIELDS = {"prompt", "image", "lastFrame", "referenceImages"}
PARAMETER_FIELDS = {"aspectRatio", "durationSeconds", "negativePrompt", "resolution",
                    "personGeneration", "enhancePrompt", "sampleCount"}
RAI_REASON = ("Veo could not generate videos because the output could violate Google's "
              "Responsible AI practices. Support codes: 17301594")


class VeoService(FakeService):
    """The fake Gemini API.

    Args (besides `FakeService`'s):
        fail_next: Calls ("submit", "poll", "download") whose next N requests answer
            503 UNAVAILABLE ("The model is overloaded").
        submit_delay: Seconds the submission's answer is held after the job is made (a
            client timing out here has made a job it never heard of).
        url_ttl: Seconds a finished video's file is kept (Google: two days).
    """

    name = "veo"

    def __init__(self, root: Path, *, fail_next: dict[str, int] | None = None,
                 submit_delay: float = 0.0, **kwargs: Any):
        super().__init__(root, **kwargs)
        self.fail_next = dict(fail_next or {})
        self.submit_delay = submit_delay
        self.log: list[tuple[float, str, str, int]] = []
        self.received: list[dict[str, Any]] = []
        self.cancels: list[str] = []
        self.files: dict[str, tuple[FakeJob, float]] = {}
        self._file_of: dict[str, str] = {}
        self._log_lock = threading.Lock()

    # -- plumbing ------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        reply = super().handle(method, path, headers, body)
        with self._log_lock:
            self.log.append((time.monotonic(), method, path.split("?")[0], reply.status))
        return reply

    def too_many(self) -> Reply:
        return error(429, "RESOURCE_EXHAUSTED",
                     "You exceeded your current quota, please check your plan and billing details.",
                     [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                       "retryDelay": f"{self.retry_after:g}s"}])

    def bad_request(self, message: str) -> Reply:
        return error(400, "INVALID_ARGUMENT", message)

    def _unavailable(self, call: str) -> Reply | None:
        with self.lock:
            if self.fail_next.get(call, 0) > 0:
                self.fail_next[call] -= 1
                return error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        return None

    # -- routes --------------------------------------------------------------------------

    def route(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
              body: bytes) -> Reply:
        refused = self._check_key(headers, query)
        if refused is not None:
            return refused
        if not path.startswith("/v1beta/"):
            return error(404, "NOT_FOUND", f"Veo is not served at {path.split('/')[1]!r}; "
                                           "use v1beta")
        rest = path.removeprefix("/v1beta/")
        if method == "POST" and rest.startswith("models/") and rest.endswith(":predictLongRunning"):
            return self._unavailable("submit") or self._submit(
                rest.removeprefix("models/").removesuffix(":predictLongRunning"), headers, body)
        if rest.startswith("models/") and "/operations/" in rest:
            if method == "POST" and rest.endswith(":cancel"):
                with self.lock:
                    self.cancels.append(rest.removesuffix(":cancel"))
                return error(404, "NOT_FOUND", "Method not found.")
            if method == "GET":
                return self._unavailable("poll") or self._operation(rest)
        if method == "GET" and rest.startswith("files/") and rest.endswith(":download"):
            if query.get("alt") != ["media"]:
                raise BadRequest("files.download needs alt=media")
            return self._unavailable("download") or self._download(
                rest.removeprefix("files/").removesuffix(":download"))
        return error(404, "NOT_FOUND", f"{method} {path} is not a Gemini API method")

    def _check_key(self, headers: dict[str, str], query: dict[str, list[str]]) -> Reply | None:
        key = headers.get("x-goog-api-key") or (query.get("key") or [None])[0]
        if not key:
            return error(403, "PERMISSION_DENIED",
                         "Method doesn't allow unregistered callers (callers without established "
                         "identity). Please use API Key or other form of API consumer identity "
                         "to call this API.")
        if key not in self.keys:
            return error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                         [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                           "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                           "metadata": {"service": "generativelanguage.googleapis.com"}}])
        return None

    # -- submission ------------------------------------------------------------------------

    def _submit(self, model: str, headers: dict[str, str], body: bytes) -> Reply:
        spec = MODELS.get(model)
        if spec is None:
            return error(404, "NOT_FOUND", f"models/{model} is not found for API version v1beta, "
                                           "or is not supported for predictLongRunning.")
        if not headers.get("content-type", "").startswith("application/json"):
            raise BadRequest("the request body must be application/json")
        try:
            request = json.loads(body)
        except ValueError:
            raise BadRequest("Invalid JSON payload received.") from None
        instance, parameters = check_request(request, model, spec)
        with self.lock:
            self.received.append(request)
        prompt = instance.get("prompt")
        if prompt and REFUSED_AT_SUBMIT in prompt:
            return error(400, "INVALID_ARGUMENT",
                         "The prompt could not be submitted. This prompt contains words that "
                         "violate the usage guidelines. Support codes: 58061214")
        first = decode_image(instance["image"], "image") if "image" in instance else None
        last = decode_image(instance["lastFrame"], "lastFrame") if "lastFrame" in instance else None
        with self.lock:  # Veo takes no seed: flagged_seeds count submissions from 1
            job = self.new_job(request, seconds=parameters["durationSeconds"],
                               aspect=parse_aspect(parameters.get("aspectRatio", "16:9")),
                               prompt=prompt, first_frame=first, last_frame=last,
                               seed=self.submissions + 1)
            job.params = {**request, "_model": model}
            if job.outcome == "failed" and job.reason.startswith("The output was flagged"):
                job.reason = RAI_REASON
        if self.submit_delay:
            time.sleep(self.submit_delay)
        return Reply.json(200, {"name": f"models/{model}/operations/{job.id}"})

    # -- operations --------------------------------------------------------------------------

    def _operation(self, name: str) -> Reply:
        _, _, job_id = name.partition("/operations/")
        job = self.jobs.get(job_id)
        if job is None or name != f"models/{job.params.get('_model')}/operations/{job.id}":
            return error(404, "NOT_FOUND", f"Operation {name} not found.")
        state = self.state(job)
        if state in ("queued", "throttled", "running"):
            return Reply.json(200, {"name": name})  # Veo says nothing more until done
        if state == "cancelled":
            return Reply.json(200, {"name": name, "done": True,
                                    "error": {"code": 1, "message": "Operation cancelled."}})
        if state == "failed" and job.reason == RAI_REASON:
            return Reply.json(200, {"name": name, "done": True, "response": {
                "@type": RESPONSE_TYPE,
                "generateVideoResponse": {"raiMediaFilteredCount": 1,
                                          "raiMediaFilteredReasons": [RAI_REASON]}}})
        if state == "failed":
            return Reply.json(200, {"name": name, "done": True,
                                    "error": {"code": 13, "message": job.reason}})
        return Reply.json(200, {"name": name, "done": True, "response": {
            "@type": RESPONSE_TYPE,
            "generateVideoResponse": {"generatedSamples": [
                {"video": {"uri": f"{PUBLIC_HOST}/v1beta/files/{self._file(job)}:download?alt=media"}}
            ]}}})

    def new_id(self) -> str:
        return secrets.token_hex(6)

    def _file(self, job: FakeJob) -> str:
        with self.lock:
            if job.id not in self._file_of:
                file_id = secrets.token_hex(6)
                self._file_of[job.id] = file_id
                self.files[file_id] = (job, time.time())
            return self._file_of[job.id]

    def _download(self, file_id: str) -> Reply:
        found = self.files.get(file_id)
        if found is None or time.time() - found[1] > self.url_ttl:
            return error(403, "PERMISSION_DENIED", f"You do not have permission to access the File "
                                                   f"{file_id} or it may not exist.")
        job = found[0]
        return Reply(302, b"", {"Location": self.result_url(job)})

    def expire_files(self) -> None:
        """Ages every file past its retention."""
        with self.lock:
            self.files = {k: (job, 0.0) for k, (job, _) in self.files.items()}


RESPONSE_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"


def error(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> Reply:
    """A Google API error (``google.rpc.Status`` as JSON)."""
    body: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        body["details"] = details
    return Reply.json(code, {"error": body})


def check_request(request: Any, model: str, spec: FakeModel) -> tuple[dict[str, Any], dict[str, Any]]:
    """The request's one instance and its parameters, checked as the Gemini API does.

    Raises:
        BadRequest: a field it does not take, or a value the model does not allow.
    """
    if not isinstance(request, dict):
        raise BadRequest("Invalid JSON payload received. Expected an object.")
    unknown(request, {"instances", "parameters"}, "")
    instances = request.get("instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        raise BadRequest("instances must hold exactly one instance")
    instance = instances[0]
    unknown(instance, INSTANCE_FIELDS, "instances[0].")
    parameters = request.get("parameters", {})
    if not isinstance(parameters, dict):
        raise BadRequest("parameters must be an object")
    unknown(parameters, PARAMETER_FIELDS, "parameters.")
    prompt = instance.get("prompt")
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
        raise BadRequest("instances[0].prompt must be a non-empty string")
    if prompt is None and "image" not in instance:
        raise BadRequest("instances[0].prompt is required without an image")
    if "lastFrame" in instance:
        if not spec.last_frame:
            raise BadRequest(f"lastFrame isn't supported by {model}.")
        if "image" not in instance:
            raise BadRequest("lastFrame needs an image (the first frame).")
    duration = parameters.get("durationSeconds", spec.durations[-1])
    if not isinstance(duration, int) or isinstance(duration, bool) or duration not in spec.durations:
        raise BadRequest(f"parameters.durationSeconds: {duration!r} is out of bound for {model}; "
                         f"allowed: {', '.join(map(str, spec.durations))}.")
    aspect = parameters.get("aspectRatio", "16:9")
    if aspect not in ("16:9", "9:16"):
        raise BadRequest(f"parameters.aspectRatio: {aspect!r} is not supported; use 16:9 or 9:16.")
    if "referenceImages" in instance:
        references = instance["referenceImages"]
        if not spec.references:
            raise BadRequest(f"referenceImages isn't supported by {model}.")
        if not isinstance(references, list) or not 1 <= len(references) <= 3:
            raise BadRequest("instances[0].referenceImages takes 1 to 3 images.")
        if "image" in instance:
            raise BadRequest("referenceImages cannot be combined with image.")
        if duration != 8 or aspect != "16:9":
            raise BadRequest("referenceImages needs durationSeconds 8 and aspectRatio 16:9.")
        for i, reference in enumerate(references):
            if not isinstance(reference, dict):
                raise BadRequest(f"instances[0].referenceImages[{i}] must be an object")
            unknown(reference, {"image", "referenceType"}, f"instances[0].referenceImages[{i}].")
            if str(reference.get("referenceType", "")).lower() != "asset":
                raise BadRequest(f"instances[0].referenceImages[{i}].referenceType must be asset.")
            decode_image(reference.get("image"), f"referenceImages[{i}].image")
    resolution = parameters.get("resolution")
    if resolution is not None:
        if resolution not in spec.resolutions:
            raise BadRequest(f"parameters.resolution: {resolution!r} isn't supported by {model}.")
        if resolution != "720p" and duration != 8:
            raise BadRequest(f"parameters.resolution {resolution} needs durationSeconds 8.")
    if parameters.get("personGeneration", "allow_all") not in ("allow_all", "allow_adult", "dont_allow"):
        raise BadRequest("parameters.personGeneration must be allow_all, allow_adult or dont_allow.")
    if parameters.get("sampleCount", 1) != 1:
        raise BadRequest(f"parameters.sampleCount: {model} makes one video per request.")
    if "negativePrompt" in parameters and not isinstance(parameters["negativePrompt"], str):
        raise BadRequest("parameters.negativePrompt must be a string")
    parameters = {**parameters, "durationSeconds": duration}
    return instance, parameters


def unknown(value: dict[str, Any], known: set[str], prefix: str) -> None:
    for name in value:
        if name not in known:
            raise BadRequest(f'Invalid JSON payload received. Unknown name "{prefix}{name}": '
                             "Cannot find field.")


def decode_image(value: Any, field: str) -> bytes:
    """The bytes of an inline image ``{bytesBase64Encoded, mimeType}``, checked to decode."""
    from PIL import Image

    if not isinstance(value, dict):
        raise BadRequest(f"{field} must be an object")
    unknown(value, {"bytesBase64Encoded", "mimeType"}, f"{field}.")
    if value.get("mimeType") not in ("image/png", "image/jpeg"):
        raise BadRequest(f"{field}.mimeType must be image/png or image/jpeg")
    try:
        data = base64.b64decode(str(value.get("bytesBase64Encoded", "")), validate=True)
        Image.open(io.BytesIO(data)).verify()
    except (binascii.Error, OSError, ValueError):
        raise BadRequest(f"{field}.bytesBase64Encoded is not a base64 image") from None
    kind = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
    if kind != value["mimeType"]:
        raise BadRequest(f"{field}.mimeType says {value['mimeType']} but the bytes are {kind}")
    return data
