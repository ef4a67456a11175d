"""Runway's image models (gen4_image, gen4_image_turbo): keyframes, with the Runway
engine's client, errors and task polling.

A keyframe is one task: ``POST /v1/text_to_image`` with ``{model, promptText, ratio,
seed, referenceImages: [{uri, tag}]}`` returns the task's id, polled at
``GET /v1/tasks/{id}`` like a video task; ``output[0]`` is the image's address (PNG),
which expires like a video's. From the ``runwayml`` 5.x request types:

- ``ratio`` names the output's resolution: ``1280:720``, ``1920:1080``, ``1024:1024``,
  ... (`RATIOS`); the engine asks the smallest of those nearest the shot's aspect that
  covers the shot, and the picture is cropped to the shot (`nearest_ratio`);
- ``referenceImages``: up to three, each ``{uri, tag}``, the uri a data URI up to 5 MB;
  the tag (3-16 letters, digits or underscores, starting with a letter) lets a prompt
  name the image: stitchcraft tags them ``ref1``, ``ref2``, ``ref3`` in priority order,
  so a prompt may say ``@ref1``. gen4_image_turbo *requires* one to three.
- ``seed`` 0 .. 2**32-1; ``promptText`` at most 1000 UTF-16 units; no negative prompt.

Reference images reach Runway only here: the video models stitchcraft knows (gen4.5,
gen4_turbo, veo3.x) take none (see `runway`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import model_validator

from .base import HostedSettings, Job, Refused, data_uri
from .images import ImageEngine, ImageSettings, nearest_ratio
from .runway import PROMPT_LIMIT, SEED_LIMIT, USD_PER_CREDIT, RunwayEngine, _moderation

RATIOS = ("1280:720", "720:1280", "720:720", "960:720", "720:960", "1680:720",
          "1920:1080", "1080:1920", "1024:1024", "1360:768", "1080:1080", "1168:880",
          "1440:1080", "1080:1440", "1808:768", "2112:912")
# Runway prices gen4_image by resolution: the ratios with a 720 side are its 720p
# outputs, the others its 1080p ones.
CREDITS = {"gen4_image": {"720p": 5, "1080p": 8}, "gen4_image_turbo": {"720p": 2, "1080p": 2}}
# docs.dev.runwayml.com/guides/pricing (as copied by public projects; not re-read here).
PRICE_DATE = "2026-09-21"
REFERENCES = {"gen4_image": 3, "gen4_image_turbo": 3}
NEEDS_REFERENCES = {"gen4_image_turbo"}
DATA_URI_LIMIT = 5 * 1024 * 1024  # a data URI "up to 5MB"
RESERVED = frozenset({"model", "promptText", "ratio", "seed", "referenceImages"})
INPUTS = {"contentModeration": _moderation}


def resolution(ratio: str) -> str:
    """``720p`` or ``1080p``: the price class of a ratio."""
    return "720p" if "720" in ratio.split(":") else "1080p"


class RunwayImageSettings(ImageSettings):
    """``engines.runway-image:``; ``input`` may set ``contentModeration``."""

    @model_validator(mode="after")
    def _check_input(self) -> RunwayImageSettings:
        taken = sorted(RESERVED & set(self.input))
        if taken:
            raise ValueError(f"input: {', '.join(taken)} is set by stitchcraft from the shot "
                             "(prompt, size, seed, references); remove it from input:")
        model = self.model or RunwayImageEngine.DEFAULT_MODEL
        if model not in CREDITS:
            return self  # a model this table does not know: passed through as written
        for key, value in self.input.items():
            check = INPUTS.get(key)
            if check is None:
                raise ValueError(f"input: Runway model '{model}' takes no field '{key}' "
                                 f"(fields it takes: {', '.join(sorted(INPUTS))})")
            problem = check(value)
            if problem:
                raise ValueError(f"input.{key} for Runway model '{model}' {problem}")
        return self


class RunwayImageEngine(ImageEngine, RunwayEngine):
    """Runway's text-to-image models with up to three reference images."""

    NAME = "runway-image"
    DESCRIPTION = "Runway API (runwayml): gen4_image keyframes, up to 3 reference images"
    SETTINGS = RunwayImageSettings  # type: ignore[assignment]
    DEFAULT_MODEL = "gen4_image"
    ASPECTS = RATIOS  # type: ignore[assignment]
    PRICES: ClassVar[dict[str, tuple[float, str, str]]] = {
        model: (max(by.values()) * USD_PER_CREDIT, PRICE_DATE, "docs.dev.runwayml.com/guides/pricing")
        for model, by in CREDITS.items()}
    REFERENCES: ClassVar[dict[str, int]] = REFERENCES

    @classmethod
    def aspects(cls, model: str, *, image: bool = False) -> tuple[str, ...]:
        return RATIOS

    @classmethod
    def fit_aspect(cls, model: str, width: int, height: int, *, image: bool = False) -> str:
        return nearest_ratio(RATIOS, width, height)

    @classmethod
    def image_price(cls, model: str, settings: HostedSettings,
                    size: tuple[int, int] | None) -> float:
        """Credits by the resolution of the ratio asked (the dearest without a size)."""
        by = CREDITS.get(model)
        if by is None or size is None:
            return super().image_price(model, settings, size)
        return by[resolution(cls.fit_aspect(model, *size))] * USD_PER_CREDIT

    def request_body(self, job: Job) -> tuple[str, dict[str, Any]]:
        """``text_to_image`` and the SDK's arguments for one keyframe.

        Raises:
            Refused: the model cannot make this job (checked before anything is sent).
        """
        if not job.prompt:
            raise Refused("Runway's text_to_image needs a prompt")
        if len(job.prompt.encode("utf-16-le")) // 2 > PROMPT_LIMIT:
            raise Refused(f"the prompt is longer than Runway's {PROMPT_LIMIT} characters")
        if job.negative_prompt:
            raise Refused("Runway's text_to_image takes no negative prompt: say it in the "
                          "prompt or give this shot another engine")
        limit = REFERENCES.get(job.model, 3)
        if len(job.references) > limit:
            raise Refused(f"{job.model} takes at most {limit} reference images")
        if job.model in NEEDS_REFERENCES and not job.references:
            raise Refused(f"{job.model} needs one to three reference images")
        args: dict[str, Any] = {"model": job.model, "prompt_text": job.prompt, "ratio": job.aspect,
                                "seed": job.seed % SEED_LIMIT}
        if job.references:
            uris = [data_uri(image) for image in job.references]
            if any(len(uri) > DATA_URI_LIMIT for uri in uris):
                raise Refused("a reference image is over Runway's 5 MB as a data URI: give a "
                              "smaller one")
            args["reference_images"] = [{"uri": uri, "tag": f"ref{number}"}
                                        for number, uri in enumerate(uris, 1)]
        return "text_to_image", args
