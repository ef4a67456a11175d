"""fal's image models (FLUX schnell, FLUX dev): keyframes, through the fal engine's
queue client (submit, status, result, cancel, over httpx).

A keyframe is one queue request: ``POST {queue}/{app}`` with ``{prompt, image_size:
{width, height}, seed, num_images: 1, ...}``; the completed request's result is
``{images: [{url, width, height, content_type}], seed, has_nsfw_concepts: [bool]}``
(fal.ai/models/<app>/llms.txt). Two facts shape the engine:

- the size is asked exactly: ``image_size`` takes ``{width, height}``; FLUX works on a
  16-pixel grid, so the shot's size is rounded up to multiples of 16 and the picture
  cropped back to the shot (`fit_image`);
- with the safety checker on (fal's default), an image it flags comes back *as a
  result*, blacked out, with ``has_nsfw_concepts: [true]``: such a result is read as
  a refusal of the candidate, not as a black keyframe.

fal bills FLUX per megapixel, rounding each image up to a whole megapixel.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import model_validator

from .base import HostedSettings, Job, JobStatus, Refused
from .fal import FalEngine, FalSettings
from .images import ImageEngine, ImageSettings
from .models import ModelSpec, Range

GRID = 16  # FLUX's latent grid, in pixels
_READ = "2026-12-02"
# app -> USD per megapixel (fal.ai model pages, as the docs index quotes them).
PER_MEGAPIXEL = {"fal-ai/flux/schnell": 0.003, "fal-ai/flux/dev": 0.025}
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    # fal.ai/models/fal-ai/flux/schnell: prompt, image_size, num_inference_steps 1-12
    # (default 4), seed, num_images 1-4, enable_safety_checker, output_format jpeg|png.
    ModelSpec("fal-ai/flux/schnell", duration=None, seed="seed", durations=(),
              options={"num_inference_steps": Range(1, 12), "enable_safety_checker": bool,
                       "output_format": ("jpeg", "png"),
                       "acceleration": ("none", "regular", "high")},
              price=(0.003, _READ, "fal.ai model page: $0.003 per megapixel")),
    # fal.ai/models/fal-ai/flux/dev: as schnell, steps 1-50 (28), guidance_scale 1-20.
    ModelSpec("fal-ai/flux/dev", duration=None, seed="seed", durations=(),
              options={"num_inference_steps": Range(1, 50), "guidance_scale": Range(1, 20),
                       "enable_safety_checker": bool, "output_format": ("jpeg", "png"),
                       "acceleration": ("none", "regular", "high")},
              price=(0.025, _READ, "fal.ai model page: $0.025 per megapixel")),
)}
# An unknown app: prompt, image_size and seed (the names fal's image apps share).
GENERIC = ModelSpec("", duration=None, seed="seed", durations=(), known=False)
RESERVED = frozenset({"image_size", "num_images", "sync_mode"})


def snapped(size: tuple[int, int]) -> tuple[int, int]:
    """The size asked of FLUX: each side rounded up to the 16-pixel grid."""
    return (math.ceil(size[0] / GRID) * GRID, math.ceil(size[1] / GRID) * GRID)


class FalImageSettings(ImageSettings, FalSettings):
    """``engines.fal-image:``: the model is a fal app id of an image model."""

    @model_validator(mode="after")
    def _known_input(self) -> FalImageSettings:  # replaces the video engine's check
        taken = sorted(RESERVED & set(self.input))
        if taken:
            raise ValueError(f"input: {', '.join(taken)} is set by stitchcraft (the shot's size, "
                             "one image per request)")
        FalImageEngine.spec(self.model or FalImageEngine.DEFAULT_MODEL).check_input(self.input)
        return self


class FalImageEngine(ImageEngine, FalEngine):
    """An image model hosted on fal (queue API): keyframes at the shot's exact size."""

    NAME = "fal-image"
    DESCRIPTION = "any image model on fal (FLUX schnell by default): keyframe stills"
    SETTINGS = FalImageSettings
    MODELS = MODELS
    GENERIC = GENERIC
    DEFAULT_MODEL = "fal-ai/flux/schnell"
    PRICES: ClassVar[dict[str, tuple[float, str, str]]] = {
        name: spec.price for name, spec in MODELS.items() if spec.price}

    @classmethod
    def fit_aspect(cls, model: str, width: int, height: int, *, image: bool = False) -> str:
        """The exact size asked, as ``W:H`` (for the manifest)."""
        w, h = snapped((width, height))
        return f"{w}:{h}"

    @classmethod
    def image_price(cls, model: str, settings: HostedSettings,
                    size: tuple[int, int] | None) -> float:
        """Per megapixel, each image rounded up to a whole one (a 1 Mpx image without a
        size); an unknown app at the dearest known rate."""
        rate = PER_MEGAPIXEL.get(model, max(PER_MEGAPIXEL.values()))
        if size is None:
            return rate
        w, h = snapped(size)
        return rate * max(1, math.ceil(w * h / 1_000_000))

    def payload(self, job: Job) -> dict[str, Any]:
        if job.references:
            raise Refused(f"{job.model} takes no reference images through stitchcraft")
        if job.negative_prompt:
            raise Refused(f"{job.model} takes no negative prompt: say it in the prompt or give "
                          "this shot another engine")
        assert job.size is not None
        width, height = snapped(job.size)
        body = self.spec(job.model).build_input(
            prompt=job.prompt, negative_prompt=None, seconds=0.0, aspect=job.aspect,
            seed=job.seed, first_image=None, last_image=None, extra=job.input)
        return {**body, "image_size": {"width": width, "height": height}, "num_images": 1}

    def output(self, body: dict[str, Any]) -> JobStatus:
        """The image's address; an image the safety checker flagged is a refusal."""
        images = body.get("images")
        first = images[0] if isinstance(images, list) and images else None
        flagged = body.get("has_nsfw_concepts")
        if isinstance(flagged, list) and flagged and flagged[0]:
            return JobStatus("failed", reason="fal's safety checker flagged the image (it comes "
                                              "back blacked out)")
        url = first.get("url") if isinstance(first, dict) else None
        if not isinstance(url, str):
            return JobStatus("failed", reason="the result holds no image")
        return JobStatus("succeeded", video=url)
