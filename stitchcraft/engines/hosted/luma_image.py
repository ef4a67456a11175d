"""Luma's image models (photon-1, photon-flash-1): keyframes, with the Luma engine's
client, errors, polling and image host.

A keyframe is one generation: ``POST /generations/image`` (``lumaai``
``generations.image.create``) with ``{model, prompt, aspect_ratio, image_ref |
character_ref | style_ref}``, polled at ``GET /generations/{id}`` like a video; a
completed one holds its picture in ``assets.image``. Luma takes no seed and no negative
prompt for Photon: a candidate's seed picks nothing at Luma.

Reference images are addresses Luma fetches, as keyframes are for its videos, so they
need the engine's ``image_host`` (the same setting as ``engines.luma``); without one
the engine takes none. How they are sent is ``reference_as``:

- ``image_ref`` (default): ``[{url}]``, up to four images guiding the picture;
- ``character_ref``: ``{identity0: {images: [url, ...]}}``, up to four images of one
  person, kept as that person;
- ``style_ref``: ``[{url}]``, one image whose style is followed.

The limits are from Luma's image-generation guide as the ``lumaai`` 1.x types shape
them; the fake enforces them, the live service was not reached.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from ...storyboard import EngineSettings
from .base import Job, Refused, Transient
from .images import ImageEngine, ImageSettings
from .luma import LumaEngine, LumaSettings

# USD per image: Luma bills Photon per megapixel; these are its prices for a 1080p
# image, as a public project copied them from Luma's API pricing on 2026-07-09 (not
# re-read here: no network).
_SOURCE = "lumalabs.ai API pricing, 1080p image (copied 2026-07-09, not re-read offline)"
PRICES = {"photon-1": (0.015, "2026-07-09", _SOURCE),
          "photon-flash-1": (0.004, "2026-07-09", _SOURCE)}
LIMITS = {"image_ref": 4, "character_ref": 4, "style_ref": 1}
INPUT_KEYS = {"format": ("jpg", "png")}


class LumaImageSettings(ImageSettings, LumaSettings):
    """``engines.luma-image:``: the image host, and how references are sent."""

    PLACEMENT = LumaSettings.PLACEMENT | {"price_per_image"}

    reference_as: Literal["image_ref", "character_ref", "style_ref"] = Field(
        default="image_ref", description="how reference images are sent: image_ref (guide the "
                                         "picture), character_ref (one person), style_ref (style)")

    @model_validator(mode="after")
    def _known_input(self) -> LumaImageSettings:  # replaces the video engine's check
        model = self.model or LumaImageEngine.DEFAULT_MODEL
        if model not in PRICES:
            return self
        for key, value in self.input.items():
            allowed = INPUT_KEYS.get(key)
            if allowed is None:
                raise ValueError(f"Luma's {model} takes no input {key} (it takes: "
                                 f"{', '.join(sorted(INPUT_KEYS))}; prompt, aspect ratio and "
                                 "references come from the shot)")
            if value not in allowed:
                raise ValueError(f"input.{key} must be one of {', '.join(allowed)}, not {value!r}")
        return self


class LumaImageEngine(ImageEngine, LumaEngine):
    """Luma Photon: keyframes from text, guided by up to four reference images."""

    NAME = "luma-image"
    DESCRIPTION = "Luma Photon (lumaai): keyframe stills, reference images through image_host"
    SETTINGS: ClassVar[type[EngineSettings] | None] = LumaImageSettings
    DEFAULT_MODEL = "photon-1"
    PRICES: ClassVar[dict[str, tuple[float, str, str]]] = PRICES
    ASSET: ClassVar[str] = "image"

    @classmethod
    def references_for(cls, settings: EngineSettings | None = None) -> int:
        """Up to `LIMITS` of the ``reference_as`` chosen, and none without an image host
        (Luma takes images only as addresses)."""
        chosen = cls.settings_for(settings)
        if not isinstance(chosen, LumaImageSettings) or chosen.image_host is None:
            return 0
        return LIMITS[chosen.reference_as]

    def submit(self, job: Job) -> str:
        if job.negative_prompt:
            raise Refused("Luma's Photon takes no negative prompt: say it in the prompt or give "
                          "this shot another engine")
        if not job.prompt:
            raise Refused("Luma's Photon needs a prompt")
        fields: dict[str, Any] = {"model": job.model, "prompt": job.prompt,
                                  "aspect_ratio": job.aspect}
        if job.references:
            fields.update(self._references(job.references))
        extra = dict(job.input)
        if "format" in extra:
            fields["format"] = extra.pop("format")
        generation = self._call("submitting the generation", lambda: self.client().generations.image.create(
            **fields, extra_body=extra or None), submitting=True)
        if not generation.id:
            raise Transient("Luma answered the submission without a generation id")
        return str(generation.id)

    def _references(self, images: list[bytes]) -> dict[str, Any]:
        """The request fields carrying the reference images, uploaded to the image host."""
        settings = self.settings
        assert isinstance(settings, LumaImageSettings)
        if settings.image_host is None:
            raise Refused("Luma takes reference images only as addresses: set "
                          "engines.luma-image.image_host")
        limit = LIMITS[settings.reference_as]
        if len(images) > limit:
            raise Refused(f"Luma's {settings.reference_as} takes at most {limit} images")
        urls = [self.host_image(image) for image in images]
        if settings.reference_as == "character_ref":
            return {"character_ref": {"identity0": {"images": urls}}}
        return {settings.reference_as: [{"url": url} for url in urls]}
