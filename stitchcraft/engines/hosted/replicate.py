"""Replicate: any video model it hosts, through its predictions API and the official SDK.

The model is a setting (``engines.replicate.model: kwaivgi/kling-v2.1``), so open and
closed models Replicate hosts are one line away; ``version:`` pins one version of it (a
model's latest version can change its pixels, so the pin is part of the engine's
fingerprint). Fields that differ per model go under ``input:``.

The protocol (replicate.com/docs/reference/http and the ``replicate`` SDK, 1.0):

- ``POST /v1/models/{owner}/{name}/predictions {input}`` runs a model's latest version;
  ``POST /v1/predictions {version, input}`` a pinned one. ``Authorization: Bearer`` with
  ``REPLICATE_API_TOKEN``. The answer is the prediction: ``{id, status, ...}``.
- ``GET /v1/predictions/{id}``: ``status`` is ``starting``, ``processing``,
  ``succeeded`` (``output``: a URL, or a list of them), ``failed`` (``error``),
  ``canceled`` or ``aborted`` (terminated before it ran; SDK 1.0's model does not know
  this state, so such an answer is read from its raw JSON). ``POST .../cancel`` cancels.
- Outputs of API predictions are deleted after an hour: the video is downloaded at once.
- A 429 carries ``{"detail": "Request was throttled. Your rate limit resets in ~30s."}``
  (the docs show no Retry-After header, so the wait is read from the detail, strictly).
  The SDK retries GETs itself, never a POST: a POST cut off after it was sent may have
  made a billed prediction, so it is reported as uncertain, never resent.
- Images go as data URIs when small (the docs recommend them under 1 MB) and through
  the files API otherwise (``POST /v1/files``, multipart, as the SDK uploads a file
  object), whose ``urls.get`` is passed as the input.

Models in `MODELS` have their input names, durations and ``input:`` keys checked against
their published schemas. Any other model is sent ``prompt``, ``image`` (the first frame)
and ``duration`` (whole seconds; 5 s asked) and its ``input:`` is passed through as
written, overriding those; its cost is estimated at the highest price in the table.
"""

from __future__ import annotations

import io
import re
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from ..base import Capabilities
from .base import (
    HostedSettings,
    Job,
    JobStatus,
    KeyRejected,
    RateLimited,
    Refused,
    ResultExpired,
    Transient,
    Uncertain,
    data_uri,
    download,
)
from .models import ModelSpec, Range, TableEngine, frame_durations

# Prices: replicate.com model pages, read 2026-12-02 from memory of those pages; they
# could not be fetched here (no network, not in the stored pages), so check them before
# relying on an estimate (set `price_per_second` to override).
_PRICE_NOTE = "replicate.com model page (not re-checked offline)"

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    # replicate.com/kwaivgi/kling-v2.1 (version daad218f schema): image-to-video only;
    # end_image only in pro mode; 5 or 10 s; 24 fps; no seed, no aspect (follows the
    # start image). Output: one URI.
    ModelSpec("kwaivgi/kling-v2.1", image="start_image", last_image="end_image",
              negative_prompt="negative_prompt", durations=(5.0, 10.0), fps=24,
              aspects=("16:9", "9:16", "1:1"), needs_image=True,
              options={"mode": ("standard", "pro")}, last_image_needs=("mode", "pro"),
              price_by=("mode", {"standard": 0.05, "pro": 0.09}),
              price=(0.05, "2026-12-02", _PRICE_NOTE + ": standard 720p $0.05/s, pro $0.09/s")),
    # replicate.com/minimax/hailuo-02 (version c43b610e schema): text- or image-to-video,
    # first_frame_image / last_frame_image, duration 6 or 10 (10 s only at 768p; the
    # default resolution is 1080p, so only 6 s is asked: longer shots are split).
    ModelSpec("minimax/hailuo-02", image="first_frame_image", last_image="last_frame_image",
              durations=(6.0,), fps=25, aspects=("16:9",),
              options={"resolution": ("512p", "768p", "1080p"), "prompt_optimizer": bool},
              price_by=("resolution", {"1080p": 0.08, "768p": 0.045}),
              price=(0.08, "2026-12-02", _PRICE_NOTE + ": 1080p $0.08/s, 768p $0.045/s")),
    # replicate.com/wan-video/wan-2.2-i2v-a14b (version 9c49fe41 schema): num_frames
    # 81..100 at frames_per_second (default 16; "pricing is based on the video duration
    # at 16 fps"); seed; no negative prompt; the image decides the shape.
    ModelSpec("wan-video/wan-2.2-i2v-a14b", image="image", duration=None, seed="seed",
              frames="num_frames", frame_counts=(81, 100, 1), fps=16,
              fps_field="frames_per_second", durations=frame_durations(81, 100, 1, 16),
              aspects=("16:9", "9:16"), needs_image=True,
              options={"resolution": ("480p", "720p"), "sample_steps": Range(1, 50),
                       "sample_shift": Range(1, 20)},
              price=None),
)}

# An unknown model: the names most Replicate video models use; `input:` passes through.
GENERIC = ModelSpec("", image="image", durations=(5.0,), aspects=("16:9", "9:16", "1:1"),
                    known=False)

DATA_URI_LIMIT = 1_000_000  # bytes; Replicate recommends data URIs only below 1 MB



class ReplicateSettings(HostedSettings):
    """``engines.replicate:``: the shared hosted settings and a pinned ``version``."""

    version: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$",
                                description="pin the model to this version id (64 hex digits)")

    @field_validator("model")
    @classmethod
    def _owner_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*", value):
            raise ValueError(f"'{value}' is not a Replicate model name like owner/name (pin a "
                             "version with `version:`)")
        return value

    @model_validator(mode="after")
    def _known_input(self) -> ReplicateSettings:
        ReplicateEngine.spec(self.model or ReplicateEngine.DEFAULT_MODEL).check_input(self.input)
        return self


class ReplicateEngine(TableEngine):
    """A video model hosted on Replicate (predictions API, official ``replicate`` SDK)."""

    NAME = "replicate"
    DESCRIPTION = "any video model on Replicate (model and version in the settings)"
    PROVIDER = "Replicate"
    KEY_VARS = ("REPLICATE_API_TOKEN",)
    SDK = "replicate"
    SETTINGS = ReplicateSettings
    MODELS = MODELS
    GENERIC = GENERIC
    DEFAULT_MODEL = "kwaivgi/kling-v2.1"
    DURATIONS = MODELS[DEFAULT_MODEL].durations
    ASPECTS = MODELS[DEFAULT_MODEL].aspects
    PRICE_PER_SECOND = MODELS[DEFAULT_MODEL].price[:2]  # type: ignore[index]
    TYPICAL_SECONDS = 240.0
    CAN_CANCEL = True
    CAPABILITIES = Capabilities(kinds=frozenset({"prompt", "image"}), text_to_video=False,
                                image_to_video=True, condition_frames=1)
    DATA_URI_LIMIT: ClassVar[int] = DATA_URI_LIMIT

    def __init__(self, settings: Any = None):
        super().__init__(settings)
        self._uploads: dict[str, str] = {}

    # -- what the model offers -----------------------------------------------------------

    @classmethod
    def fingerprint(cls, settings: Any = None) -> dict[str, Any]:
        found = super().fingerprint(settings)
        chosen = cls.settings_for(settings)
        found["version"] = chosen.version if isinstance(chosen, ReplicateSettings) else None
        return found

    # -- talking to Replicate ------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The SDK client (one per engine; its httpx client is thread-safe). It has no
        `close` of its own: closing it closes that httpx client."""
        import replicate

        return self._shared_client(
            lambda: replicate.Client(api_token=self.keys()["REPLICATE_API_TOKEN"],
                                     base_url=self.hosted.base_url),
            close=lambda sdk: sdk._client.close())

    def payload(self, job: Job) -> dict[str, Any]:
        """The prediction's input for `job`, under the model's field names."""
        if job.references:
            raise Refused(f"{job.model} takes no reference images through stitchcraft")
        first = self._image(job.first_frame) if job.first_frame is not None else None
        last = self._image(job.last_frame) if job.last_frame is not None else None
        return self.spec(job.model).build_input(
            prompt=job.prompt, negative_prompt=job.negative_prompt, seconds=job.seconds,
            aspect=job.aspect, seed=job.seed, first_image=first, last_image=last,
            extra=job.input)

    def submit(self, job: Job) -> str:
        payload = self.payload(job)
        version = self.settings.version if isinstance(self.settings, ReplicateSettings) else None
        try:
            if version:
                prediction = self.client.predictions.create(version=version, input=payload)
            else:
                prediction = self.client.models.predictions.create(model=job.model, input=payload)
        except Exception as exc:
            raise self._error(exc, "creating the prediction", sent=True) from None
        return str(prediction.id)

    def _image(self, data: bytes) -> str:
        """A data URI for a small image, else an upload through the files API."""
        if len(data) <= self.DATA_URI_LIMIT:
            return data_uri(data)
        import hashlib

        digest = hashlib.sha256(data).hexdigest()
        if digest not in self._uploads:
            kind = "png" if data.startswith(b"\x89PNG") else "jpeg"
            try:
                uploaded = self.client.files.create(io.BytesIO(data), filename=f"frame.{kind}",
                                                    content_type=f"image/{kind}")
            except Exception as exc:
                # an upload costs nothing: a cut-off one is simply tried again
                raise self._error(exc, "uploading the image", sent=False) from None
            self._uploads[digest] = uploaded.urls["get"]
        return self._uploads[digest]

    def status(self, job_id: str) -> JobStatus:
        try:
            found = self._prediction(job_id)
        except Exception as exc:
            raise self._error(exc, "reading the prediction", sent=False) from None
        state = found.get("status")
        if state == "starting":
            return JobStatus("queued")
        if state == "processing":
            return JobStatus("running")
        if state == "succeeded":
            output = found.get("output")
            video = output[0] if isinstance(output, list) and output else output
            return JobStatus("succeeded", video=video if isinstance(video, str) else None)
        if state == "canceled":
            return JobStatus("cancelled", reason="the prediction was canceled")
        if state == "aborted":
            return JobStatus("failed", reason="the prediction was aborted before it ran")
        if state == "failed":
            return JobStatus("failed", reason=str(found.get("error") or "the prediction failed"))
        raise Transient(f"the prediction is in an unknown state {state!r}")

    def _prediction(self, job_id: str) -> dict[str, Any]:
        """The prediction's JSON, through the SDK (raw when its model refuses a state)."""
        try:
            from pydantic.v1 import ValidationError
        except ImportError:  # pragma: no cover
            from pydantic import ValidationError  # type: ignore[assignment]
        try:
            return dict(self.client.predictions.get(job_id).dict())
        except ValidationError:
            response = self.client._request("GET", f"/v1/predictions/{job_id}")
            return dict(response.json())

    def cancel(self, job_id: str) -> bool:
        try:
            self.client.predictions.cancel(job_id)
        except Exception as exc:
            raise self._error(exc, "canceling the prediction", sent=False) from None
        return True

    def fetch(self, status: JobStatus, path: Any) -> None:
        if not status.video:
            raise ResultExpired("the prediction has no output any more (Replicate deletes "
                                "outputs of API predictions after an hour)")
        download(status.video, path)

    def _error(self, exc: Exception, what: str, *, sent: bool) -> Exception:
        """The retry loop's error for an SDK or transport failure.

        Args:
            sent: The request creates a billed prediction, so a transport failure after
                it may have left (Uncertain) rather than never reached the server.
        """
        import httpx
        from replicate.exceptions import ReplicateError

        if isinstance(exc, ReplicateError):
            code = exc.status or 0
            detail = self.redact(" ".join(p for p in (exc.title, exc.detail) if p) or f"HTTP {code}")
            if code == 429:
                return RateLimited(f"{what}: {detail}", throttle_wait(detail))
            if code in (401, 403):
                return KeyRejected(f"{what}: HTTP {code} {detail}")
            if code == 402:
                return KeyRejected(f"{what}: the account cannot pay (HTTP 402) {detail}")
            if code >= 500 and sent and code != 503:
                # only "unavailable" surely did no work: another 5xx may have come after
                # the prediction was made (and billed)
                return Uncertain(f"{what}: HTTP {code} {detail} after the request was sent")
            if code >= 500:
                return Transient(f"{what}: HTTP {code} {detail}")
            return Refused(f"{what}: HTTP {code} {detail}")
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
            return Transient(f"{what}: {type(exc).__name__} (not sent)")
        if isinstance(exc, httpx.TransportError):
            if sent:
                return Uncertain(f"{what}: {type(exc).__name__} after the request was sent")
            return Transient(f"{what}: {type(exc).__name__}")
        raise exc


def throttle_wait(detail: str) -> float | None:
    """Seconds to wait after a 429, from Replicate's detail ("Your rate limit resets in
    ~30s."; the SDK's error keeps no headers), None to back off."""
    match = re.search(r"resets in ~?\s*(\d+(?:\.\d+)?)\s*s", detail)
    return float(match.group(1)) if match else None
