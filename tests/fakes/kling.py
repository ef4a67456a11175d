"""A fake Kling API, written from Kling's published protocol (API reference, "General
Info", "Text to Video", "Image to Video").

- ``POST /v1/videos/text2video`` and ``/v1/videos/image2video`` → ``data.task_id``;
  ``GET /v1/videos/{kind}/{task_id}`` → ``data.task_status`` submitted, processing,
  succeed or failed (``task_status_msg``), the video in
  ``data.task_result.videos[0]`` (``id``, ``url``, ``duration``). No cancel call.
- ``Authorization: Bearer <JWT>``: HS256, signed with the secret key of the access key
  in ``iss``; the signature, ``exp`` and ``nbf`` are verified (401 with code 1001 empty,
  1002 invalid, 1003 not yet valid, 1004 expired, 1000 unknown access key).
- Every answer is ``{code, message, request_id, data}`` with the documented HTTP status
  of its code (1201 invalid parameter → 400, 1301 content security → 400, 1302 rate →
  429, 1303 parallel tasks over the resource pack's limit → 429, 1102 balance → 429,
  5000 → 500); with ``errors_as_200`` business errors come with HTTP 200, as users
  report for some of them.
- Strict where the docs are: ``model_name``, ``mode`` std/pro, ``duration`` "5"/"10"
  as a string, ``aspect_ratio`` 16:9/9:16/1:1 (text2video only), ``cfg_scale`` 0..1 and
  not on kling-v2.x, unknown keys refused (1201); ``image``/``image_tail`` are raw
  base64 (a ``data:`` prefix is refused) or a URL, PNG or JPEG, at least 300 px a side,
  aspect 1:2.5 .. 2.5:1; ``image_tail`` only where the capability map allows it.
- Moderation: a prompt holding REFUSED_AT_SUBMIT gets 1301 at once; the Nth submission
  (``flagged_seeds``, from 1) or a prompt holding REFUSED_AFTER_RUN fails after running.
- ``POST /v1/videos/multi-image2video`` (Kling's "Multi-Image to Video"): ``model_name``
  kling-v1-6 only, ``image_list`` of 1 to 4 ``{image}`` (each checked as ``image`` is),
  ``prompt`` required, ``negative_prompt``, ``mode``, ``duration``, ``aspect_ratio``,
  ``callback_url``, ``external_task_id``; no ``image``/``image_tail``/``cfg_scale``.
  The images received are kept on the job (``references``).
- ``parallel``: tasks not yet finished beyond this many make a submission fail with
  1303 (0: no limit).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import time
import uuid
from typing import Any

from .service import REFUSED_AT_SUBMIT, FakeJob, FakeService, Reply

MODELS = {"kling-v1", "kling-v1-5", "kling-v1-6", "kling-v2-master", "kling-v2-1",
          "kling-v2-1-master", "kling-v2-5-turbo", "kling-v2-6"}
TEXT_MODELS = MODELS - {"kling-v1-5", "kling-v2-1"}
TAIL = {"kling-v1": {"std", "pro"}, "kling-v1-5": {"pro"}, "kling-v1-6": {"pro"},
        "kling-v2-1": {"pro"}, "kling-v2-5-turbo": {"pro"}, "kling-v2-6": {"pro"}}
CFG_MODELS = {"kling-v1", "kling-v1-5", "kling-v1-6"}
COMMON = {"model_name", "prompt", "negative_prompt", "cfg_scale", "mode", "camera_control",
          "duration", "callback_url", "external_task_id", "watermark_info", "sound"}
FIELDS = {"text2video": COMMON | {"aspect_ratio"},
          "image2video": COMMON | {"image", "image_tail", "static_mask", "dynamic_masks"},
          "multi-image2video": {"model_name", "image_list", "prompt", "negative_prompt", "mode",
                                "duration", "aspect_ratio", "callback_url", "external_task_id"}}
MULTI_MODELS = {"kling-v1-6"}
STATUS = {0: 200, 1000: 401, 1001: 401, 1002: 401, 1003: 401, 1004: 401, 1100: 429,
          1101: 429, 1102: 429, 1103: 403, 1200: 400, 1201: 400, 1202: 404, 1203: 404,
          1300: 400, 1301: 400, 1302: 429, 1303: 429, 1304: 429, 5000: 500, 5001: 503,
          5002: 504}


class Invalid(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class FakeKling(FakeService):
    """Args (besides FakeService's): credentials (access key -> secret key),
    errors_as_200, parallel. Set `balance` False to make submissions fail with 1102."""

    name = "kling"

    def __init__(self, *args: Any, credentials: dict[str, str] | None = None,
                 errors_as_200: bool = False, parallel: int = 0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.credentials = credentials or {"test-access": "test-secret"}
        self.errors_as_200 = errors_as_200
        self.parallel = parallel
        self.balance = True
        self.kinds: dict[str, str] = {}
        self.bodies: list[dict[str, Any]] = []
        self.refusals: list[int] = []
        self.server_errors: list[int] = []  # codes (5000/5001/5002) the next API requests get
        self.stale_urls = 0  # result addresses handed out already expired

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        with self.lock:
            code = self.server_errors.pop(0) if self.server_errors and \
                not path.startswith("/results/") else None
            if code is not None:
                self.requests.append((method, path))
        if code is not None:
            return self.answer(code, "Server internal error")
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

    def answer(self, code: int, message: str, data: Any = None, **headers: str) -> Reply:
        status = STATUS.get(code, 400)
        if code and self.errors_as_200 and code not in (1000, 1001, 1002, 1003, 1004):
            status = 200
        if code:
            with self.lock:
                self.refusals.append(code)
        body: dict[str, Any] = {"code": code, "message": message, "request_id": str(uuid.uuid4())}
        if data is not None:
            body["data"] = data
        return Reply.json(status, body, **headers)

    def too_many(self) -> Reply:
        return self.answer(1302, "API request too fast, exceeding the rate limit",
                           **{"Retry-After": f"{self.retry_after:g}"})

    def bad_request(self, message: str) -> Reply:
        return self.answer(1201, message)

    def route(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
              body: bytes) -> Reply:
        problem = self.check_token(headers.get("authorization", ""))
        if problem is not None:
            return self.answer(*problem)
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[:2] != ["v1", "videos"] or parts[2] not in FIELDS:
            return self.answer(1203, "the requested resource does not exist")
        kind = parts[2]
        try:
            if method == "POST" and len(parts) == 3:
                return self.create(kind, body)
            if method == "GET" and len(parts) == 4:
                job = self.jobs.get(parts[3])
                if job is None or self.kinds.get(job.id) != kind:
                    return self.answer(1203, f"task {parts[3]} does not exist")
                return self.answer(0, "SUCCEED", self.task(job))
        except Invalid as exc:
            return self.answer(exc.code, str(exc))
        return self.answer(1202, "the requested method is invalid")

    def check_token(self, authorization: str) -> tuple[int, str] | None:
        import jwt

        if not authorization:
            return 1001, "Authorization is empty"
        if not authorization.startswith("Bearer "):
            return 1002, "Authorization is invalid"
        token = authorization[len("Bearer "):]
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return 1002, "Authorization is invalid"
        secret = self.credentials.get(str(claims.get("iss")))
        if secret is None:
            return 1000, "Authentication failed"
        if header.get("alg") != "HS256":
            return 1002, "Authorization is invalid"
        try:
            jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["iss", "exp", "nbf"]})
        except jwt.ExpiredSignatureError:
            return 1004, "Authorization has expired"
        except jwt.ImmatureSignatureError:
            return 1003, "Authorization is not yet valid"
        except jwt.PyJWTError:
            return 1002, "Authorization is invalid"
        return None

    def create(self, kind: str, body: bytes) -> Reply:
        try:
            params = json.loads(body)
        except ValueError:
            raise Invalid(1200, "request body is not JSON") from None
        if not isinstance(params, dict):
            raise Invalid(1200, "request body must be a JSON object")
        unknown = sorted(set(params) - FIELDS[kind])
        if unknown:
            raise Invalid(1201, f"invalid parameter: {', '.join(unknown)}")
        model = params.get("model_name", "kling-v1")
        if model not in MODELS:
            raise Invalid(1201, f"model_name {model} is invalid")
        if kind == "text2video" and model not in TEXT_MODELS:
            raise Invalid(1201, f"{model} does not support text2video")
        mode = params.get("mode", "std")
        if mode not in ("std", "pro"):
            raise Invalid(1201, "mode must be std or pro")
        duration = params.get("duration", "5")
        if duration not in ("5", "10"):
            raise Invalid(1201, "duration must be the string \"5\" or \"10\"")
        if "cfg_scale" in params:
            cfg = params["cfg_scale"]
            if model not in CFG_MODELS:
                raise Invalid(1201, f"{model} does not support cfg_scale")
            if isinstance(cfg, bool) or not isinstance(cfg, (int, float)) or not 0 <= cfg <= 1:
                raise Invalid(1201, "cfg_scale must be in [0, 1]")
        for text in ("prompt", "negative_prompt"):
            if text in params and (not isinstance(params[text], str) or len(params[text]) > 2500):
                raise Invalid(1201, f"{text} must be a string of at most 2500 characters")
        first = last = None
        references: list[bytes] = []
        if kind == "multi-image2video":
            if model not in MULTI_MODELS:
                raise Invalid(1201, f"{model} does not support multi-image2video")
            images = params.get("image_list")
            if not isinstance(images, list) or not 1 <= len(images) <= 4 or not all(
                    isinstance(item, dict) and set(item) == {"image"} for item in images):
                raise Invalid(1201, "image_list must hold 1 to 4 {image} objects")
            references = [self.image(item, "image") or b"" for item in images]
            aspect = params.get("aspect_ratio", "16:9")
            if aspect not in ("16:9", "9:16", "1:1"):
                raise Invalid(1201, "aspect_ratio must be 16:9, 9:16 or 1:1")
            size = tuple(int(x) for x in aspect.split(":"))
            if not params.get("prompt"):
                raise Invalid(1201, "prompt must not be empty")
        elif kind == "text2video":
            aspect = params.get("aspect_ratio", "16:9")
            if aspect not in ("16:9", "9:16", "1:1"):
                raise Invalid(1201, "aspect_ratio must be 16:9, 9:16 or 1:1")
            size = tuple(int(x) for x in aspect.split(":"))
            if not params.get("prompt"):
                raise Invalid(1201, "prompt must not be empty")
        else:
            if not params.get("image") and not params.get("image_tail"):
                raise Invalid(1201, "at least one of image or image_tail must be provided")
            if params.get("image_tail") and mode not in TAIL.get(model, set()):
                raise Invalid(1201, f"{model} in {mode} mode does not support image_tail")
            first = self.image(params, "image")
            last = self.image(params, "image_tail")
            size = image_size(first or last)  # the video follows the image's aspect ratio
        prompt = params.get("prompt") or ""
        if REFUSED_AT_SUBMIT in prompt:
            raise Invalid(1301, "Failure to pass the risk control system")
        if not self.balance:
            raise Invalid(1102, "Account balance not enough")
        with self.lock:
            if self.parallel:
                running = [j for j in self.jobs.values()
                           if time.monotonic() - j.created < self.queued + self.running]
                if len(running) >= self.parallel:
                    raise Invalid(1303, "parallel task over resource pack limit")
            self.bodies.append(params)
            job = self.new_job(params, seconds=float(duration), aspect=size, prompt=prompt,
                               first_frame=first, last_frame=last, seed=self.submissions + 1)
            job.references = references
            self.kinds[job.id] = kind
        return self.answer(0, "SUCCEED", {"task_id": job.id, "task_status": "submitted",
                                          "task_info": {}, "created_at": int(time.time() * 1000),
                                          "updated_at": int(time.time() * 1000)})

    def image(self, params: dict[str, Any], name: str) -> bytes | None:
        value = params.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise Invalid(1201, f"{name} must be a string")
        if value.startswith("data:"):
            raise Invalid(1201, f"{name}: submit the raw Base64 string without a data: prefix")
        if value.startswith(("http://", "https://")):
            import httpx

            try:
                data = httpx.get(value, timeout=5.0).content
            except httpx.HTTPError:
                raise Invalid(1201, f"{name}: the image URL is not accessible") from None
        else:
            try:
                data = base64.b64decode(value, validate=True)
            except binascii.Error:
                raise Invalid(1201, f"{name} is not valid Base64") from None
        if not (data.startswith(b"\x89PNG") or data.startswith(b"\xff\xd8")):
            raise Invalid(1201, f"{name} must be a .jpg/.jpeg/.png image")
        if len(data) > 10 * 1024 * 1024:
            raise Invalid(1201, f"{name} is larger than 10MB")
        width, height = image_size(data)
        if min(width, height) < 300:
            raise Invalid(1201, f"{name} is {width}x{height}; the minimum is 300px")
        if max(width, height) / min(width, height) > 2.5:
            raise Invalid(1201, f"{name} aspect ratio must be between 1:2.5 and 2.5:1")
        return data

    def task(self, job: FakeJob) -> dict[str, Any]:
        state = self.state(job)
        named = {"queued": "submitted", "throttled": "submitted", "running": "processing",
                 "succeeded": "succeed"}.get(state, "failed")
        data: dict[str, Any] = {
            "task_id": job.id, "task_status": named,
            "task_status_msg": job.reason if named == "failed" else "",
            "task_info": {}, "created_at": int(time.time() * 1000),
            "updated_at": int(time.time() * 1000),
        }
        if named == "succeed":
            data["task_result"] = {"videos": [{"id": str(uuid.uuid4()), "url": self.result_url(job),
                                               "duration": f"{job.seconds:g}"}]}
        return data


def image_size(data: bytes | None) -> tuple[int, int]:
    from PIL import Image

    assert data is not None
    with Image.open(io.BytesIO(data)) as image:
        return image.size
