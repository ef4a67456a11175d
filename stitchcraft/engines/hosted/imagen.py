"""Google Imagen through the Gemini API: keyframes, with the Veo engine's client.

An Imagen request is synchronous: ``POST /v1beta/models/{model}:predict`` with
``{instances: [{prompt}], parameters: {sampleCount, aspectRatio, personGeneration,
imageSize, includeRaiReason}}`` answers ``{predictions: [{bytesBase64Encoded,
mimeType}]}`` with the image in the answer; a sample Google's filters withheld comes
back as ``{raiFilteredReason}`` (with ``includeRaiReason``), or not at all. This is
what google-genai's ``models.generate_images`` sends; the installed client (3.x)
refuses that call outside Vertex AI, so, as for Veo, the request goes through the
client's own transport (same key header, base URL, API version and errors).

What the Gemini API takes for Imagen (google-genai's ``_GenerateImagesConfig_to_mldev``
and the Imagen guide): ``sampleCount`` 1-4, ``aspectRatio`` 1:1, 3:4, 4:3, 9:16 or 16:9,
``imageSize`` 1K or 2K (Standard and Ultra, not Fast), ``personGeneration``
dont_allow / allow_adult / allow_all, ``guidanceScale``, ``safetySetting``,
``language``. It refuses ``seed``, ``negativePrompt``, ``addWatermark`` and
``enhancePrompt`` ("not supported in Gemini API"): a candidate's seed picks nothing at
Google, so the candidates of a keyframe are independent draws, and a shot's
``negative_prompt`` is refused rather than dropped. Nor does it take reference images
(subject and style customisation are Vertex AI's ``imagen-3.0-capability-001``).

The durable job: with the image in the submission's answer there is no job to poll.
`submit` keeps the answer in memory under a fresh id, which the journal records; the
next step reads it from there. A render killed while the request is in flight leaves
the entry ``submitting`` (never resubmitted by itself: Google may have billed it); one
killed in the instant between the answer and the download finds the id but not the
image, and reports it billed and lost (``--resubmit`` makes it anew).
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from pathlib import Path
from typing import Any, ClassVar

from pydantic import model_validator

from .base import (
    Job,
    JobStatus,
    Refused,
    ResultExpired,
    Uncertain,
)
from .images import ImageEngine, ImageSettings
from .veo import VeoEngine, _translate

# USD per image, Gemini API paid tier (ai.google.dev/gemini-api/docs/pricing as quoted
# in Google's developer forum, 2025-10; not re-read here: no network).
_PRICE_SOURCE = "ai.google.dev/gemini-api/docs/pricing (quoted, not re-read offline)"
PRICES = {
    "imagen-4.0-generate-001": (0.04, "2025-10-01", _PRICE_SOURCE),
    "imagen-4.0-ultra-generate-001": (0.06, "2025-10-01", _PRICE_SOURCE),
    "imagen-4.0-fast-generate-001": (0.02, "2025-10-01", _PRICE_SOURCE),
    "imagen-3.0-generate-002": (0.03, "2025-10-01", _PRICE_SOURCE),
}
ASPECTS = ("1:1", "3:4", "4:3", "9:16", "16:9")
SIZED = {"imagen-4.0-generate-001", "imagen-4.0-ultra-generate-001"}  # take imageSize
INPUT_FIELDS: dict[str, tuple[Any, ...] | None] = {
    "personGeneration": ("dont_allow", "allow_adult", "allow_all"),
    "imageSize": ("1K", "2K"),
    "guidanceScale": None,
    "safetySetting": ("block_low_and_above", "block_medium_and_above", "block_only_high",
                      "block_none"),
    "language": None,
}
INPUT_REFUSED = {
    "seed": "the Gemini API takes no seed for Imagen (only Vertex AI does)",
    "negativePrompt": "the Gemini API takes no negative prompt for Imagen",
    "sampleCount": "stitchcraft asks one image per request (candidates: sets how many)",
    "aspectRatio": "set by the shot's size",
    "addWatermark": "the Gemini API always watermarks Imagen images (SynthID)",
    "enhancePrompt": "the Gemini API does not take enhancePrompt for Imagen",
}


class ImagenSettings(ImageSettings):
    """``engines.imagen:``; ``input`` fields are checked for the models stitchcraft knows."""

    @model_validator(mode="after")
    def _check_input(self) -> ImagenSettings:
        model = self.model or ImagenEngine.DEFAULT_MODEL
        if model not in PRICES:
            return self  # a model stitchcraft does not know: passed through unchecked
        for name, value in self.input.items():
            if name in INPUT_REFUSED:
                raise ValueError(f"input.{name}: {INPUT_REFUSED[name]}")
            if name not in INPUT_FIELDS:
                raise ValueError(f"input.{name}: not an Imagen field; {model} takes "
                                 f"{', '.join(sorted(INPUT_FIELDS))}")
            if name == "imageSize" and model not in SIZED:
                raise ValueError(f"input.imageSize: {model} makes 1K images only")
            allowed = INPUT_FIELDS[name]
            if allowed is not None and value not in allowed:
                raise ValueError(f"input.{name}: {value!r} is not one of "
                                 f"{', '.join(map(repr, allowed))}")
        return self


class ImagenEngine(ImageEngine, VeoEngine):
    """Google Imagen through the Gemini API (``GEMINI_API_KEY``): keyframes from text."""

    NAME = "imagen"
    DESCRIPTION = "Google Imagen through the Gemini API (hosted): keyframe stills from text"
    SETTINGS = ImagenSettings  # type: ignore[assignment]
    PROVIDER = "Google Imagen"
    DEFAULT_MODEL = "imagen-4.0-generate-001"
    ASPECTS = ASPECTS  # type: ignore[assignment]
    PRICES: ClassVar[dict[str, tuple[float, str, str]]] = PRICES
    REFERENCES: ClassVar[dict[str, int]] = {}
    CAN_CANCEL = False

    def __init__(self, settings: Any = None):
        super().__init__(settings)
        self._answers: dict[str, bytes | str] = {}  # id -> image bytes, or why withheld
        self._answers_lock = threading.Lock()

    @classmethod
    def aspects(cls, model: str, *, image: bool = False) -> tuple[str, ...]:
        return ASPECTS

    def submit(self, job: Job) -> str:
        if job.negative_prompt:
            raise Refused("the Gemini API takes no negative prompt for Imagen: say it in the "
                          "prompt or give this shot another engine")
        if job.references:
            raise Refused("Imagen takes no reference images through the Gemini API")
        if not job.prompt:
            raise Refused("Imagen needs a prompt")
        parameters: dict[str, Any] = {"sampleCount": 1, "aspectRatio": job.aspect,
                                      "includeRaiReason": True}
        parameters.update(job.input)
        body = {"instances": [{"prompt": job.prompt}], "parameters": parameters}
        try:
            response = self._client()._api_client.request("post", f"models/{job.model}:predict",
                                                          body)
        except Exception as exc:
            raise _translate(exc, "generating the image", submitting=True) from None
        try:
            predictions = json.loads(response.body or "{}").get("predictions") or []
        except (ValueError, AttributeError):
            raise Uncertain("the Gemini API answered the image request unreadably") from None
        answer: bytes | str = "withheld by Google's safety filters (no image came back)"
        for prediction in predictions:
            if not isinstance(prediction, dict):
                continue
            if prediction.get("bytesBase64Encoded"):
                answer = base64.b64decode(prediction["bytesBase64Encoded"])
                break
            if prediction.get("raiFilteredReason"):
                answer = f"withheld by Google's safety filters: {prediction['raiFilteredReason']}"
        answer_id = f"imagen-{uuid.uuid4().hex}"
        with self._answers_lock:
            self._answers[answer_id] = answer
        return answer_id

    def status(self, job_id: str) -> JobStatus:
        with self._answers_lock:
            answer = self._answers.get(job_id)
        if answer is None:
            raise ResultExpired("the image came back in the answer to a render that was "
                                "interrupted before it was saved")
        if isinstance(answer, str):
            return JobStatus("failed", reason=answer)
        return JobStatus("succeeded", video=job_id)

    def cancel(self, job_id: str) -> bool:
        return False  # nothing runs at Google after the answer

    def fetch(self, status: JobStatus, path: Path) -> None:
        assert status.video is not None
        with self._answers_lock:
            answer = self._answers.get(status.video)
        if not isinstance(answer, bytes):
            raise ResultExpired("the image is no longer held")
        path.write_bytes(answer)
        with self._answers_lock:  # in the journal now: no need to hold it twice
            self._answers.pop(status.video, None)
