"""Google Veo through the Gemini API, with the official `google-genai` client.

A Veo take is one long-running operation at the Gemini API:

1. ``POST /v1beta/models/{model}:predictLongRunning`` with ``{instances: [{prompt,
   image, lastFrame, referenceImages}], parameters: {aspectRatio, durationSeconds,
   negativePrompt, ...}}`` answers ``{name: "models/{model}/operations/{id}"}``;
2. ``GET /v1beta/{name}`` (``client.operations.get``) until ``done``: then either
   ``error`` (a ``google.rpc.Status``) or ``response.generateVideoResponse`` with
   ``generatedSamples[].video.uri``, or no sample and ``raiMediaFilteredReasons`` when
   Google's safety filters withheld the video (billed or not, the take is refused);
3. ``GET /v1beta/files/{id}:download?alt=media`` (``client.files.download``), which needs
   the key and redirects to the bytes; Google keeps the file two days.

The key is sent as ``x-goog-api-key`` by the client. Errors are ``google.rpc.Status``
JSON: 429 ``RESOURCE_EXHAUSTED`` (with a ``RetryInfo`` delay where Google gives one),
400 ``INVALID_ARGUMENT`` (a request this model does not take, or ``API_KEY_INVALID``
for a bad key), 403 ``PERMISSION_DENIED``, 5xx.

The Gemini API takes no ``seed`` for Veo (the client refuses one outside Vertex AI), so
a candidate's seed picks nothing at Google: the candidates of a shot are independent
draws of the same request. Nor does it document cancelling a video operation: a timed
out job is sent the standard long-running-operation cancel, best effort, and may go on
(and be billed) at Google.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

from pydantic import model_validator

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
    ResultExpired,
    Transient,
    Uncertain,
)

API_VERSION = "v1beta"

_FULL = Capabilities(kinds=frozenset({"prompt", "image"}), text_to_video=True, image_to_video=True,
                     first_last_frame=True, references=3, condition_frames=1)
_FAST = dataclasses.replace(_FULL, references=0)
_FIRST_FRAME = Capabilities(kinds=frozenset({"prompt", "image"}), text_to_video=True,
                            image_to_video=True, condition_frames=1)


class VeoModel:
    """What one Veo model takes through the Gemini API.

    Attributes:
        durations: ``durationSeconds`` values it makes.
        price: USD per generated second (Gemini API paid tier, default resolution).
        capabilities: What it conditions on.
        resolutions: ``resolution`` values it takes ("" where the field is not taken).
    """

    def __init__(self, durations: tuple[float, ...], price: float, capabilities: Capabilities,
                 resolutions: tuple[str, ...] = ()):
        self.durations, self.price = durations, price
        self.capabilities, self.resolutions = capabilities, resolutions


# Prices: the Gemini API's paid tier, USD per generated second at 720p/1080p, as a
# third-party guide quoted ai.google.dev/gemini-api/docs/pricing after checking it on
# 2026-03-02 (no network here to read the page itself): Veo 3.1 and Veo 3 $0.40, their
# Fast variants $0.15 (since the September 2025 cut), Veo 2 $0.35. Capabilities from
# the Gemini API's Veo guide (ai.google.dev/gemini-api/docs/video): last frame and up
# to 3 reference images ("asset") are Veo 3.1's; Veo 3 and 2 start from a first frame
# only; Veo 2 makes 5, 6 or 8 s without sound; 1080p/4k and references only at 8 s.
MODELS: dict[str, VeoModel] = {
    "veo-3.1-generate-preview": VeoModel((4.0, 6.0, 8.0), 0.40, _FULL, ("720p", "1080p", "4k")),
    "veo-3.1-generate-001": VeoModel((4.0, 6.0, 8.0), 0.40, _FULL, ("720p", "1080p", "4k")),
    # Reference images are documented for Veo 3.1, not (strict reading) its Fast variant.
    "veo-3.1-fast-generate-preview": VeoModel((4.0, 6.0, 8.0), 0.15, _FAST,
                                              ("720p", "1080p", "4k")),
    "veo-3.1-fast-generate-001": VeoModel((4.0, 6.0, 8.0), 0.15, _FAST, ("720p", "1080p", "4k")),
    "veo-3.0-generate-001": VeoModel((4.0, 6.0, 8.0), 0.40, _FIRST_FRAME, ("720p", "1080p")),
    "veo-3.0-fast-generate-001": VeoModel((4.0, 6.0, 8.0), 0.15, _FIRST_FRAME, ("720p", "1080p")),
    "veo-2.0-generate-001": VeoModel((5.0, 6.0, 8.0), 0.35, _FIRST_FRAME),
}

# `input:` fields the Gemini API takes for Veo besides those stitchcraft sets itself
# (prompt, image, lastFrame, referenceImages, aspectRatio, durationSeconds,
# negativePrompt), with the values it documents (None: any of that type).
INPUT_FIELDS: dict[str, tuple[Any, ...] | None] = {
    "resolution": ("720p", "1080p", "4k"),
    "personGeneration": ("allow_all", "allow_adult", "dont_allow"),
    "enhancePrompt": (True, False),
}
# Fields set from the storyboard, or that the Gemini API refuses for Veo: named so the
# message says why rather than "unknown".
INPUT_REFUSED = {
    "seed": "the Gemini API takes no seed for Veo (only Vertex AI does)",
    "sampleCount": "stitchcraft asks one video per request (candidates: sets how many)",
    "numberOfVideos": "stitchcraft asks one video per request (candidates: sets how many)",
    "generateAudio": "the Gemini API does not take generateAudio (Veo 3 always makes sound)",
    "durationSeconds": "set by the shot's duration",
    "aspectRatio": "set by the output size",
    "negativePrompt": "set by the shot's negative_prompt:",
}


class VeoSettings(HostedSettings):
    """``engines.veo:``; `input` fields are checked for the models stitchcraft knows."""

    @model_validator(mode="after")
    def _check_input(self) -> VeoSettings:
        model = self.model or VeoEngine.DEFAULT_MODEL
        known = MODELS.get(model)
        if known is None:
            return self  # a model stitchcraft does not know: passed through unchecked
        for name, value in self.input.items():
            if name in INPUT_REFUSED:
                raise ValueError(f"input.{name}: {INPUT_REFUSED[name]}")
            if name not in INPUT_FIELDS:
                raise ValueError(f"input.{name}: not a Veo field; {model} takes "
                                 f"{', '.join(sorted(INPUT_FIELDS))}")
            allowed = INPUT_FIELDS[name]
            if name == "resolution":
                allowed = known.resolutions
                if not allowed:
                    raise ValueError(f"input.resolution: {model} takes no resolution (it makes 720p)")
            if allowed is not None and (value not in allowed or isinstance(value, bool)
                                        != isinstance(allowed[0], bool)):
                raise ValueError(f"input.{name}: {value!r} is not one of "
                                 f"{', '.join(repr(a) for a in allowed)} for {model}")
        return self


class VeoEngine(HostedEngine):
    """Google Veo through the Gemini API (``GEMINI_API_KEY``)."""

    NAME = "veo"
    DESCRIPTION = ("Google Veo through the Gemini API (hosted): text, first frame, first+last "
                   "frame, reference images")
    SETTINGS = VeoSettings
    PROVIDER = "Google Veo"
    KEY_VARS = ("GEMINI_API_KEY",)
    SDK = "google-genai"
    DEFAULT_MODEL = "veo-3.1-generate-preview"
    DURATIONS: ClassVar[tuple[float, ...]] = (4.0, 6.0, 8.0)
    ASPECTS = ("16:9", "9:16")
    PRICE_PER_SECOND = (0.40, "2026-03-02")
    TYPICAL_SECONDS = 90.0
    CAPABILITIES = _FULL
    # Seconds one HTTP request may take (the download streams, so this bounds a stall).
    REQUEST_TIMEOUT: ClassVar[float] = 60.0

    # -- what each model offers ---------------------------------------------------------

    @classmethod
    def durations(cls, model: str) -> tuple[float, ...]:
        known = MODELS.get(model)
        return known.durations if known else cls.DURATIONS

    @classmethod
    def model_capabilities(cls, model: str) -> Capabilities:
        known = MODELS.get(model)
        return known.capabilities if known else cls.CAPABILITIES

    @classmethod
    def tariff(cls, model: str, settings: HostedSettings, seconds: float, *, image: bool,
               references: bool) -> Bill:
        """Veo makes 1080p/4k and reference-guided videos only at 8 s (the Gemini API's
        documented limits): those ask, and are billed, 8 s whatever the shot needs."""
        known = MODELS.get(model)
        asked = cls.fit_duration(model, seconds)
        if references or str(settings.input.get("resolution", "720p")) != "720p":
            asked = max(cls.durations(model))
        return Bill(asked, asked, asked * (known.price if known else cls.PRICE_PER_SECOND[0]))

    # -- the client -------------------------------------------------------------------

    def _client(self) -> Any:
        """One `genai.Client` per engine, pointed at `base_url` when set."""
        key = self.keys()["GEMINI_API_KEY"]
        if not key:
            raise KeyRejected("GEMINI_API_KEY is not set")

        def make() -> Any:
            from google import genai
            from google.genai import types

            options = types.HttpOptions(api_version=API_VERSION,
                                        base_url=self.hosted.base_url or None,
                                        timeout=int(self.REQUEST_TIMEOUT * 1000))
            return genai.Client(api_key=key, http_options=options)

        return self._shared_client(make)

    # -- the provider calls -------------------------------------------------------------

    def submit(self, job: Job) -> str:
        known = MODELS.get(job.model)
        if job.references and job.first_frame is not None:
            raise Refused("Veo takes reference images or a first frame, not both (a chained or "
                          "image shot cannot also carry a reference)")
        if job.references and job.aspect != "16:9":
            raise Refused("Veo makes reference-guided videos in 16:9 only")
        if known is not None:
            if job.last_frame is not None and not known.capabilities.first_last_frame:
                raise Refused(f"{job.model} takes no last frame through the Gemini API")
            if job.references and not known.capabilities.references:
                raise Refused(f"{job.model} takes no reference images through the Gemini API")
        instance: dict[str, Any] = {}
        if job.prompt:
            instance["prompt"] = job.prompt
        if job.first_frame is not None:
            instance["image"] = _image(job.first_frame)
        if job.last_frame is not None:
            if job.first_frame is None:
                raise Refused("Veo takes a last frame only together with a first frame")
            instance["lastFrame"] = _image(job.last_frame)
        if job.references:
            instance["referenceImages"] = [{"image": _image(r), "referenceType": "asset"}
                                           for r in job.references[:3]]
        parameters: dict[str, Any] = {"aspectRatio": job.aspect,
                                      "durationSeconds": int(job.seconds)}
        if job.negative_prompt:
            parameters["negativePrompt"] = job.negative_prompt
        parameters.update(job.input)
        body = {"instances": [instance], "parameters": parameters}
        # The installed client refuses `models.generate_videos` outside Vertex AI (its
        # Gemini API path was removed in google-genai 3.x), so the request it used to
        # build is sent through the client's own transport: same key header, base URL,
        # API version and error types.
        client = self._client()
        try:
            response = client._api_client.request("post", f"models/{job.model}:predictLongRunning",
                                                  body)
        except Exception as exc:
            raise _translate(exc, "submitting the job", submitting=True) from None
        try:
            name = json.loads(response.body)["name"]
        except (ValueError, KeyError, TypeError):
            raise Uncertain("the Gemini API answered the submission without an operation "
                            "name") from None
        if not isinstance(name, str) or "/operations/" not in name:
            raise Uncertain(f"the Gemini API answered an unexpected operation name {name!r}")
        return name

    def status(self, job_id: str) -> JobStatus:
        from google.genai import types

        try:
            operation = self._client().operations.get(
                types.GenerateVideosOperation.model_validate({"name": job_id}))
        except Exception as exc:
            raise _translate(exc, "polling the job") from None
        if not operation.done:
            return JobStatus("running")  # Veo operations say nothing more until done
        if operation.error:
            error = operation.error
            message = error.get("message") or "the operation failed"
            code = error.get("code")
            state = "cancelled" if code == 1 else "failed"
            return JobStatus(state, reason=f"{message} (code {code})" if code else message)
        result = operation.response or operation.result
        videos = (result.generated_videos or []) if result is not None else []
        for generated in videos:
            if generated.video is not None and generated.video.uri:
                return JobStatus("succeeded", video=generated.video.uri)
        reasons = (result.rai_media_filtered_reasons or []) if result is not None else []
        if reasons or (result is not None and result.rai_media_filtered_count):
            return JobStatus("failed", reason="withheld by Google's safety filters: " +
                             ("; ".join(reasons) or f"{result.rai_media_filtered_count} video(s) "
                                                    "filtered"))
        return JobStatus("failed", reason="the operation finished without a video")

    def cancel(self, job_id: str) -> bool:
        """The standard long-running-operation cancel, best effort: the Gemini API
        documents none for video operations (`CAN_CANCEL` is False), so UNIMPLEMENTED or
        NOT_FOUND are expected; True only when Google accepted it."""
        try:
            self._client()._api_client.request("post", f"{job_id}:cancel", {})
        except Exception as exc:
            error = _translate(exc, "cancelling the job")
            if isinstance(error, (Refused, KeyRejected)):
                return False  # not offered, or not for this key: nothing more to do
            raise error from None
        return True

    def fetch(self, status: JobStatus, path: Path) -> None:
        from google.genai import types

        assert status.video is not None
        try:
            self._client().files.download(file=types.Video(uri=status.video), destination=str(path))
        except Exception as exc:
            raise _translate(exc, "downloading the video", downloading=True) from None


def _image(data: bytes) -> dict[str, str]:
    """Image bytes as the Gemini API's inline image."""
    kind = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
    return {"bytesBase64Encoded": base64.b64encode(data).decode(), "mimeType": kind}


def _translate(exc: Exception, what: str, *, submitting: bool = False,
               downloading: bool = False) -> Exception:
    """The retry loop's error for a client exception (others are returned unchanged)."""
    import httpx
    from google.genai import errors

    if isinstance(exc, errors.APIError):
        code, status = exc.code, exc.status or ""
        message = f"{what}: {code} {status}: {exc.message or ''}".rstrip(": ")
        if code == 429:
            return RateLimited(message, _retry_delay(exc))
        if code in (500, 502, 503):
            return Transient(message)
        if code == 504:
            # DEADLINE_EXCEEDED at Google: the operation may have been made.
            return Uncertain(message) if submitting else Transient(message)
        if downloading and code in (403, 404, 410):
            # Google answers PERMISSION_DENIED ("... or it may not exist") for a file past
            # its two days, as for one never made.
            return ResultExpired(f"{message} (Google keeps a video two days)")
        if code in (401, 403) or _reason(exc) == "API_KEY_INVALID":
            return KeyRejected(message)
        if code >= 500:
            return Transient(message)
        return Refused(message)
    # The client sends through httpx, or its fork httpx2 where that is installed.
    transports = [httpx] + [module for module in (_optional("httpx2"),) if module is not None]
    if isinstance(exc, tuple(c for m in transports for c in (m.ConnectError, m.ConnectTimeout))):
        return Transient(f"{what}: {type(exc).__name__}")  # the request never left
    if isinstance(exc, tuple(m.TransportError for m in transports)):
        if submitting:
            return Uncertain(f"{what}: {type(exc).__name__} after the request was sent")
        return Transient(f"{what}: {type(exc).__name__}")
    return exc


def _optional(name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _details(exc: Any) -> list[dict[str, Any]]:
    body = exc.details if isinstance(exc.details, dict) else {}
    found = body.get("error", body).get("details") if isinstance(body.get("error", body), dict) else None
    return [d for d in found or [] if isinstance(d, dict)]


def _reason(exc: Any) -> str | None:
    """The ``ErrorInfo`` reason of a Google error (``API_KEY_INVALID``, ...)."""
    for detail in _details(exc):
        if detail.get("@type", "").endswith("google.rpc.ErrorInfo"):
            return str(detail.get("reason"))
    return None


def _retry_delay(exc: Any) -> float | None:
    """Seconds to wait from a Retry-After header or a ``RetryInfo`` detail (``"30s"``)."""
    from .base import retry_after

    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        found = retry_after(headers)
        if found is not None:
            return found
    for detail in _details(exc):
        if detail.get("@type", "").endswith("google.rpc.RetryInfo"):
            try:
                return max(0.0, float(str(detail.get("retryDelay", "")).removesuffix("s")))
            except ValueError:
                return None
    return None
