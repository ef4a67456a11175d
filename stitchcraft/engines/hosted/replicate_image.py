"""Replicate's image models (FLUX schnell, FLUX dev): keyframes, through the Replicate
engine's client (predictions API, official SDK), polling and downloads.

A keyframe is one prediction: ``POST /v1/models/{owner}/{name}/predictions`` with
``{input: {prompt, aspect_ratio, seed, num_outputs: 1, ...}}``; a succeeded one's
``output`` is a list of image addresses (WebP by default; ``output_format`` may ask
jpg or png), deleted an hour after the prediction ends, so downloaded at once. An image
the safety checker flags fails the prediction (its ``error`` says so): the candidate is
refused. The models take an aspect ratio, not a size: the picture is cropped to the
shot (`fit_image`). Input names and ranges are the models' published schemas.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import model_validator

from .base import Job, Refused
from .images import ImageEngine, ImageSettings
from .models import ModelSpec, Range
from .replicate import ReplicateEngine, ReplicateSettings

_NOTE = "replicate.com model page (not re-checked offline)"
FLUX_ASPECTS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    # replicate.com/black-forest-labs/flux-schnell: prompt, aspect_ratio, seed,
    # num_outputs 1-4, num_inference_steps 1-4, output_format webp|jpg|png,
    # output_quality 0-100, disable_safety_checker, go_fast, megapixels "1" | "0.25".
    ModelSpec("black-forest-labs/flux-schnell", duration=None, aspect="aspect_ratio",
              seed="seed", durations=(), aspects=FLUX_ASPECTS,
              options={"num_inference_steps": Range(1, 4), "output_format": ("webp", "jpg", "png"),
                       "output_quality": Range(0, 100), "disable_safety_checker": bool,
                       "go_fast": bool, "megapixels": ("1", "0.25")},
              price=(0.003, "2026-12-02", _NOTE + ": $0.003 per image")),
    # replicate.com/black-forest-labs/flux-dev: as schnell, steps 1-50, guidance 0-10.
    ModelSpec("black-forest-labs/flux-dev", duration=None, aspect="aspect_ratio", seed="seed",
              durations=(), aspects=FLUX_ASPECTS,
              options={"num_inference_steps": Range(1, 50), "guidance": Range(0, 10),
                       "output_format": ("webp", "jpg", "png"), "output_quality": Range(0, 100),
                       "disable_safety_checker": bool, "go_fast": bool,
                       "megapixels": ("1", "0.25")},
              price=(0.025, "2026-12-02", _NOTE + ": $0.025 per image")),
)}
# An unknown model: prompt, aspect_ratio and seed; its `input:` passes through.
GENERIC = ModelSpec("", duration=None, aspect="aspect_ratio", seed="seed", durations=(),
                    aspects=FLUX_ASPECTS, known=False)
RESERVED = frozenset({"num_outputs"})


class ReplicateImageSettings(ImageSettings, ReplicateSettings):
    """``engines.replicate-image:``: an image model on Replicate, and a pinned version."""

    @model_validator(mode="after")
    def _known_input(self) -> ReplicateImageSettings:  # replaces the video engine's check
        if RESERVED & set(self.input):
            raise ValueError("input: num_outputs is set by stitchcraft (one image per "
                             "prediction; candidates: sets how many)")
        ReplicateImageEngine.spec(self.model or ReplicateImageEngine.DEFAULT_MODEL).check_input(
            self.input)
        return self


class ReplicateImageEngine(ImageEngine, ReplicateEngine):
    """An image model hosted on Replicate: keyframes, cropped to the shot."""

    NAME = "replicate-image"
    DESCRIPTION = "any image model on Replicate (FLUX schnell by default): keyframe stills"
    SETTINGS = ReplicateImageSettings
    MODELS = MODELS
    GENERIC = GENERIC
    DEFAULT_MODEL = "black-forest-labs/flux-schnell"
    PRICES: ClassVar[dict[str, tuple[float, str, str]]] = {
        name: spec.price for name, spec in MODELS.items() if spec.price}

    def payload(self, job: Job) -> dict[str, Any]:
        if job.references:
            raise Refused(f"{job.model} takes no reference images through stitchcraft")
        if job.negative_prompt:
            raise Refused(f"{job.model} takes no negative prompt: say it in the prompt or give "
                          "this shot another engine")
        body = self.spec(job.model).build_input(
            prompt=job.prompt, negative_prompt=None, seconds=0.0, aspect=job.aspect,
            seed=job.seed, first_image=None, last_image=None, extra=job.input)
        return {**body, "num_outputs": 1}
