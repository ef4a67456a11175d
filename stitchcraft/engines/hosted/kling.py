"""Kling through its official REST API (no SDK): `httpx` and a JWT per request.

The API (global endpoint ``https://api-singapore.klingai.com``; the docs moved it there
from ``https://api.klingai.com``): every request carries ``Authorization: Bearer
<JWT>``, an HS256 token signed with ``KLING_SECRET_KEY`` whose ``iss`` is
``KLING_ACCESS_KEY``, valid from 5 s ago for 30 min. ``POST /v1/videos/text2video`` or
``/v1/videos/image2video`` returns ``data.task_id``; ``GET /v1/videos/{kind}/{task_id}``
gives ``data.task_status`` submitted → processing → succeed (the video in
``data.task_result.videos[0].url``) or failed (``task_status_msg``). Images (``image``,
and ``image_tail`` as the last frame on the models and modes that take it) are raw
base64 without a ``data:`` prefix, at least 300 px a side. There is no cancel call.

Every answer is ``{code, message, request_id, data}``; ``code`` 0 is success and the
others are the documented service codes (1000-1004 the token, 1100-1103 the account,
1200-1203 the request, 1300-1304 policy and limits, 5000-5002 Kling itself). They are
read from the body whatever the HTTP status, since business errors may come with 200.
"""

from __future__ import annotations

import base64
import io
import math
import threading
import time
from typing import Any, ClassVar

from pydantic import model_validator

from ...storyboard import EngineSettings
from ..base import Capabilities
from .base import (
    Bill,
    HostedEngine,
    HostedSettings,
    Job,
    JobStatus,
    KeyRejected,
    RateLimited,
    Refused,
    Transient,
    Uncertain,
    retry_after,
)

DEFAULT_BASE_URL = "https://api-singapore.klingai.com"
TOKEN_SECONDS = 1800  # the docs' example lifetime (30 min)
TOKEN_RENEW = 300  # a token with less left than this is replaced
MIN_SIDE = 300  # the docs: image dimensions at least 300 px
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_RATIO = 2.5  # the docs: image aspect ratio 1:2.5 to 2.5:1
MULTI_IMAGES = 4  # multi-image2video: image_list of up to 4
# What multi-image2video takes besides its images (its docs list no cfg_scale,
# camera_control nor image_tail).
MULTI_FIELDS = {"model_name", "image_list", "prompt", "negative_prompt", "mode", "duration",
                "aspect_ratio", "callback_url", "external_task_id"}


class KlingModel:
    """What one Kling model offers, from the docs' capability map.

    Attributes:
        text: Makes text-to-video (kling-v1-5 and kling-v2-1 animate images only).
        modes: Modes it takes (empty: no ``mode`` field, the "master" models).
        tail: Modes in which it takes ``image_tail`` (a last frame).
        durations: Seconds it makes.
        cfg: Takes ``cfg_scale`` (the docs: "kling-v2.x models do not support it").
        prices: USD per second by mode ("" for a model without modes).
        references: Most reference images it takes, through ``multi-image2video``
            (documented for kling-v1-6 only; 0 for the others).
    """

    def __init__(self, *, text: bool, modes: tuple[str, ...], tail: tuple[str, ...],
                 prices: dict[str, float], durations: tuple[float, ...] = (5.0, 10.0),
                 cfg: bool = False, references: int = 0):
        self.text, self.modes, self.tail, self.prices = text, modes, tail, prices
        self.durations, self.cfg, self.references = durations, cfg, references

    @property
    def default_mode(self) -> str:
        """The mode sent when the settings name none: the API's default ``std``, or
        ``pro`` where that is the only mode with a published price."""
        if not self.modes:
            return ""
        return "std" if "std" in self.prices else self.modes[-1]


# Prices: USD per second, the Comfy-Org partner-node pricing table (2025-10-29), which
# passes Kling's API prices through (a 5 s take costs 5 times these, a 10 s one 10).
MODELS: dict[str, KlingModel] = {
    "kling-v1": KlingModel(text=True, modes=("std", "pro"), tail=("std", "pro"), cfg=True,
                      prices={"std": 0.028, "pro": 0.098}),
    "kling-v1-5": KlingModel(text=False, modes=("std", "pro"), tail=("pro",), cfg=True,
                        prices={"std": 0.056, "pro": 0.098}),
    "kling-v1-6": KlingModel(text=True, modes=("std", "pro"), tail=("pro",), cfg=True,
                        prices={"std": 0.056, "pro": 0.098}, references=MULTI_IMAGES),
    "kling-v2-master": KlingModel(text=True, modes=(), tail=(), prices={"": 0.28}),
    "kling-v2-1": KlingModel(text=False, modes=("std", "pro"), tail=("pro",),
                        prices={"std": 0.056, "pro": 0.098}),
    "kling-v2-1-master": KlingModel(text=True, modes=(), tail=(), prices={"": 0.28}),
    "kling-v2-5-turbo": KlingModel(text=True, modes=("std", "pro"), tail=("pro",), prices={"pro": 0.07}),
}
DEFAULT_MODEL = "kling-v2-5-turbo"
PRICE_DATE = "2025-10-29"
INPUT_KEYS = {"mode", "cfg_scale", "camera_control"}

# Service codes (the "Error Code" table of the docs' General Info).
KEY_CODES = {1000, 1001, 1002, 1003, 1004}
ACCOUNT_CODES = {1100, 1101, 1102, 1103, 1304}
REQUEST_CODES = {1200, 1201, 1202, 1203}
POLICY_CODES = {1300, 1301}
LIMIT_CODES = {1302, 1303}
SERVER_CODES = {5000, 5001, 5002}


class KlingSettings(HostedSettings):
    """``engines.kling:``; ``input`` takes ``mode`` (std/pro), ``cfg_scale`` (0-1, v1
    models), ``camera_control`` for the models stitchcraft knows."""

    @model_validator(mode="after")
    def _known_input(self) -> KlingSettings:
        name = self.model or DEFAULT_MODEL
        known = MODELS.get(name)
        if known is None:
            return self  # a model stitchcraft does not know: passed through as written
        unknown = sorted(set(self.input) - INPUT_KEYS)
        if unknown:
            raise ValueError(f"Kling's {name} takes no input {', '.join(unknown)} (it takes: "
                             f"{', '.join(sorted(INPUT_KEYS))}; prompt, duration, aspect ratio and "
                             "images come from the shot)")
        mode = self.input.get("mode")
        if mode is not None and mode not in known.modes:
            allowed = ", ".join(known.modes) if known.modes else "none: leave mode out"
            raise ValueError(f"input.mode {mode!r} is not a mode of {name} ({allowed})")
        cfg = self.input.get("cfg_scale")
        if cfg is not None:
            if not known.cfg:
                raise ValueError(f"{name} takes no cfg_scale (only the kling-v1 models do)")
            if isinstance(cfg, bool) or not isinstance(cfg, (int, float)) or not 0 <= cfg <= 1:
                raise ValueError("input.cfg_scale must be a number from 0 to 1")
        return self


class KlingEngine(HostedEngine):
    """Kling (kling-v1 ... kling-v2-5-turbo): text- and image-to-video, last frame where
    the model and mode take ``image_tail``."""

    NAME = "kling"
    VERSION = "1"
    SETTINGS: ClassVar[type[EngineSettings] | None] = KlingSettings
    PROVIDER = "Kling"
    KEY_VARS = ("KLING_ACCESS_KEY", "KLING_SECRET_KEY")
    SDK = "pyjwt"
    DEFAULT_MODEL = DEFAULT_MODEL
    DURATIONS = (5.0, 10.0)
    ASPECTS = ("16:9", "9:16", "1:1")
    PRICE_PER_SECOND = (MODELS[DEFAULT_MODEL].prices["pro"], PRICE_DATE)
    TYPICAL_SECONDS = 240.0
    CAN_CANCEL = False  # the API has no cancel call: a job past its timeout is given up
    CAPABILITIES = Capabilities(kinds=frozenset({"prompt", "image"}), text_to_video=True,
                                image_to_video=True, first_last_frame=True, condition_frames=1)

    def __init__(self, settings: EngineSettings | None = None):
        super().__init__(settings)
        self._token_lock = threading.Lock()
        self._token: tuple[str, float] | None = None

    # -- what it offers ------------------------------------------------------------------

    @classmethod
    def durations(cls, model: str) -> tuple[float, ...]:
        known = MODELS.get(model)
        return known.durations if known else cls.DURATIONS

    @classmethod
    def mode_for(cls, settings: EngineSettings | None = None) -> str:
        """The mode sent (empty for a model that takes none)."""
        chosen = cls.settings_for(settings)
        asked = chosen.input.get("mode") if isinstance(chosen, HostedSettings) else None
        if asked:
            return str(asked)
        known = MODELS.get(cls.model_for(settings))
        return known.default_mode if known else "std"

    @classmethod
    def capabilities_for(cls, settings: EngineSettings | None = None) -> Capabilities:
        import dataclasses

        caps = super().capabilities_for(settings)
        known = MODELS.get(cls.model_for(settings))
        if known is None:
            return caps  # an unknown model: the API says what it refuses
        return dataclasses.replace(caps, text_to_video=known.text,
                                   first_last_frame=cls.mode_for(settings) in known.tail,
                                   references=known.references)

    @classmethod
    def tariff(cls, model: str, settings: HostedSettings, seconds: float, *, image: bool,
               references: bool) -> Bill:
        """Priced per second by model and mode (a 5 s take costs 5 times the rate)."""
        known = MODELS.get(model)
        if known is None:
            rate = max(p for m in MODELS.values() for p in m.prices.values())  # estimate high
        else:
            # A mode whose price was not found is estimated at the model's dearest.
            rate = known.prices.get(cls.mode_for(settings), max(known.prices.values()))
        asked = cls.fit_duration(model, seconds)
        return Bill(asked, asked, asked * rate)

    # -- auth ------------------------------------------------------------------------------

    def token(self) -> str:
        """A JWT for the next request: HS256 with the secret key, ``iss`` the access key,
        valid from 5 s ago for 30 min; reused until 5 min before it expires."""
        import jwt

        with self._token_lock:
            now = time.time()
            if self._token is None or self._token[1] - now < TOKEN_RENEW:
                keys = self.keys()
                expires = int(now) + TOKEN_SECONDS
                payload = {"iss": keys["KLING_ACCESS_KEY"], "exp": expires, "nbf": int(now) - 5}
                encoded = jwt.encode(payload, keys["KLING_SECRET_KEY"], algorithm="HS256",
                                     headers={"alg": "HS256", "typ": "JWT"})
                self._token = (encoded, float(expires))
            return self._token[0]

    def client(self) -> Any:
        import httpx

        return self._shared_client(lambda: httpx.Client(
            base_url=(self.hosted.base_url or DEFAULT_BASE_URL).rstrip("/"),
            timeout=httpx.Timeout(60.0, connect=15.0)))

    # -- the provider's protocol -----------------------------------------------------------

    def submit(self, job: Job) -> str:
        known = MODELS.get(job.model)
        mode = self.mode_for(self.settings)
        if job.references:
            return self._submit_references(job, mode)
        if job.last_frame is not None and known is not None and mode not in known.tail:
            raise Refused(f"{job.model} takes a last frame (image_tail) only in mode "
                          f"{' or '.join(known.tail) or 'none'}; set engines.kling.input.mode")
        if job.last_frame is not None and job.model == "kling-v1" and job.seconds > 5:
            raise Refused("kling-v1 takes a last frame only in 5 s videos")
        body: dict[str, Any] = {"model_name": job.model, "duration": f"{job.seconds:g}"}
        if job.prompt:
            body["prompt"] = job.prompt
        if job.negative_prompt:
            body["negative_prompt"] = job.negative_prompt
        if mode and (known is None or known.modes):
            body["mode"] = mode
        if job.first_frame is not None or job.last_frame is not None:
            kind = "image2video"
            if job.first_frame is not None:
                body["image"] = kling_image(job.first_frame, "the first frame")
            if job.last_frame is not None:
                body["image_tail"] = kling_image(job.last_frame, "the last frame")
        else:
            kind = "text2video"
            if known is not None and not known.text:
                raise Refused(f"{job.model} makes no text-to-video: give the shot an image or chain it")
            body["aspect_ratio"] = job.aspect  # image2video takes the image's ratio
        body.update({k: v for k, v in job.input.items() if k != "mode"})
        data = self._call("POST", f"/v1/videos/{kind}", body, what="submitting the task")
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if not task_id:
            raise Transient("Kling answered the submission without a task_id")
        return f"{kind}/{task_id}"  # the poll path needs the kind, and so does a resume

    def _submit_references(self, job: Job, mode: str) -> str:
        """A take guided by reference images: ``POST /v1/videos/multi-image2video`` with
        ``image_list`` (up to four, the same raw base64 as a first frame); it takes no
        first or last frame, and is documented for kling-v1-6 only."""
        known = MODELS.get(job.model)
        if known is not None and not known.references:
            raise Refused(f"{job.model} takes no reference images (Kling's multi-image2video "
                          "is documented for kling-v1-6)")
        if job.first_frame is not None or job.last_frame is not None:
            raise Refused("Kling's multi-image2video takes reference images or a first/last "
                          "frame, not both (a chained or image shot cannot also carry references)")
        if len(job.references) > MULTI_IMAGES:
            raise Refused(f"Kling's multi-image2video takes at most {MULTI_IMAGES} images")
        if not job.prompt:
            raise Refused("Kling's multi-image2video needs a prompt")
        unknown = sorted(set(job.input) - MULTI_FIELDS)
        if unknown:
            raise Refused(f"Kling's multi-image2video takes no {', '.join(unknown)} (set in "
                          "engines.kling.input)")
        body: dict[str, Any] = {
            "model_name": job.model, "prompt": job.prompt, "duration": f"{job.seconds:g}",
            "aspect_ratio": job.aspect,
            "image_list": [{"image": kling_image(image, f"reference image {number}")}
                           for number, image in enumerate(job.references, 1)]}
        if job.negative_prompt:
            body["negative_prompt"] = job.negative_prompt
        if mode:
            body["mode"] = mode
        body.update({k: v for k, v in job.input.items() if k != "mode"})
        data = self._call("POST", "/v1/videos/multi-image2video", body, what="submitting the task")
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if not task_id:
            raise Transient("Kling answered the submission without a task_id")
        return f"multi-image2video/{task_id}"

    def status(self, job_id: str) -> JobStatus:
        data = self._call("GET", f"/v1/videos/{job_id}", None, what="polling the task")
        if not isinstance(data, dict):
            raise Transient("Kling answered the poll without data")
        state = data.get("task_status")
        if state == "succeed":
            videos = (data.get("task_result") or {}).get("videos") or []
            url = videos[0].get("url") if videos and isinstance(videos[0], dict) else None
            if not url:
                return JobStatus("failed", reason="succeeded without a video")
            return JobStatus("succeeded", video=str(url))
        if state == "failed":
            return JobStatus("failed", reason=str(data.get("task_status_msg") or "the task failed"))
        if state == "processing":
            return JobStatus("running")
        return JobStatus("queued")  # submitted

    def _call(self, method: str, path: str, body: dict[str, Any] | None, *, what: str) -> Any:
        """One request; returns ``data`` of a ``code: 0`` answer, else raises the job loop's
        error for the service code (read from the body whatever the HTTP status)."""
        import httpx

        submitting = method == "POST"
        headers = {"Authorization": f"Bearer {self.token()}", "Content-Type": "application/json"}
        try:
            response = self.client().request(method, path, json=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise Transient(f"{what}: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            if submitting:
                raise Uncertain(f"{what}: {type(exc).__name__} before Kling answered") from None
            raise Transient(f"{what}: {type(exc).__name__}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        code = answer.get("code") if isinstance(answer, dict) else None
        if code == 0 and response.status_code < 300:
            return answer.get("data")
        message = str(answer.get("message") or "")[:300] if isinstance(answer, dict) else ""
        raise service_error(response.status_code, code, message, response.headers, what)


def service_error(status: int, code: Any, message: str, headers: Any, what: str) -> Exception:
    """The job loop's error for a Kling answer that is not a success."""
    said = f"code {code}: {message}" if code is not None else f"HTTP {status}"
    if code in KEY_CODES:
        hint = " (check the system clock)" if code in (1003, 1004) else ""
        return KeyRejected(f"{said}{hint}")
    if code in ACCOUNT_CODES:
        return KeyRejected(said)  # the account cannot run jobs: stop, do not retry
    if code in LIMIT_CODES or (status == 429 and code is None):
        return RateLimited(f"{what}: {said}", retry_after(headers))
    if code in POLICY_CODES or code in REQUEST_CODES:
        return Refused(said)
    if code in SERVER_CODES or status >= 500:
        return Transient(f"{what}: {said}")
    if status in (401, 403):
        return KeyRejected(said)
    return Refused(f"HTTP {status}, {said}")


def kling_image(image: bytes, what: str) -> str:
    """A PNG as Kling takes it: raw base64 (no ``data:`` prefix), at least 300 px a side.

    A smaller frame (a draft render) is enlarged by the smallest whole factor that
    reaches 300 px, each pixel repeated, so no pixel value changes.

    Raises:
        Refused: its aspect ratio is outside 1:2.5 .. 2.5:1, or it is over 10 MB.
    """
    from PIL import Image

    with Image.open(io.BytesIO(image)) as opened:
        width, height = opened.size
        if max(width, height) / min(width, height) > MAX_RATIO:
            raise Refused(f"Kling takes images from 1:2.5 to 2.5:1; {what} is {width}x{height}")
        factor = math.ceil(MIN_SIDE / min(width, height))
        if factor > 1:
            out = io.BytesIO()
            opened.convert("RGB").resize((width * factor, height * factor),
                                         Image.Resampling.NEAREST).save(out, format="PNG")
            image = out.getvalue()
    if len(image) > MAX_IMAGE_BYTES:
        raise Refused(f"{what} is {len(image) / 1e6:.1f} MB as PNG; Kling takes images up to 10 MB")
    return base64.b64encode(image).decode()
