"""What the hosted image engines share: a keyframe is one image job at a provider.

A hosted image engine (``imagen``, ``runway-image``, ``luma-image``, ``fal-image``,
``replicate-image``) serves shots of kind ``keyframe``: one still per candidate, at
the shot's size. It is its provider's video engine with the job's ends changed, so the
client, the auth, the error translation and the polling are that engine's own, and the
job goes through the same durable steps (`HostedEngine`: journalled before it is
submitted, resumed by its job id, never submitted again by itself):

- `job_for` asks for the aspect ratio the provider offers nearest the shot's and
  carries the shot's size (`Job.size`) and its reference images;
- the finished image is downloaded into the job journal, as a video would be, and
  lives there until the take is stored;
- `_take` decodes it (PNG, JPEG or WebP, whatever the provider sent) and fits it to the
  shot's size exactly by the one cover rule the package uses for stills
  (`cover`): scaled so that it covers width x height, then the centre kept. An image
  already of the shot's aspect ratio and size is taken pixel for pixel.

A job is billed per image (`bill`), at the provider's published price for one image of
the model (dated, with its source, beside each model), or at ``price_per_image`` from
the settings. `Bill.seconds` and `Bill.billed_seconds` are 0 for an image.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, model_validator

from ...storyboard import EngineSettings
from ..base import Capabilities, SegmentRequest, Take, TakeFailure
from .base import Bill, HostedEngine, HostedSettings, Job, png_file

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np

    from ...generate.jobs import JobBook

KEYFRAME = "keyframe"


class ImageSettings(HostedSettings):
    """The settings every hosted image engine takes, under ``engines.<name>:``."""

    PLACEMENT = HostedSettings.PLACEMENT | {"price_per_image"}

    price_per_image: float | None = Field(default=None, ge=0, le=100,
                                          description="USD per image (default: the "
                                                      "provider's published price)")

    @model_validator(mode="after")
    def _priced_per_image(self) -> ImageSettings:
        if self.price_per_second is not None:
            raise ValueError("price_per_second: an image engine is billed per image; set "
                             "price_per_image instead")
        return self


class ImageEngine(HostedEngine):
    """A provider's image model, as a source of keyframe takes.

    Mixed in before the provider's video engine (``class RunwayImageEngine(ImageEngine,
    RunwayEngine)``), whose client and protocol it keeps; the subclass says what one
    image job sends (`submit`, or the provider's request hook) and where its result is.

    Attributes:
        PRICES: USD per image by model, with the date read and where.
        REFERENCES: Most reference images each model takes (a model not listed: 0).
    """

    SETTINGS: ClassVar[type[EngineSettings] | None] = ImageSettings
    DURATIONS: ClassVar[tuple[float, ...]] = ()
    PRICES: ClassVar[Mapping[str, tuple[float, str, str]]] = {}
    REFERENCES: ClassVar[Mapping[str, int]] = {}
    TYPICAL_SECONDS = 20.0
    CAPABILITIES = Capabilities(kinds=frozenset({KEYFRAME}), hosted=True)

    # -- what the model offers ------------------------------------------------------------

    @classmethod
    def durations(cls, model: str) -> tuple[float, ...]:
        return ()  # a still: no duration to ask

    @classmethod
    def references_for(cls, settings: EngineSettings | None = None) -> int:
        """Most reference images the settings' model takes (0 where none)."""
        return cls.REFERENCES.get(cls.model_for(settings), 0)

    @classmethod
    def capabilities_for(cls, settings: EngineSettings | None = None) -> Capabilities:
        return Capabilities(kinds=frozenset({KEYFRAME}), references=cls.references_for(settings),
                            hosted=True)

    @classmethod
    def image_price(cls, model: str, settings: HostedSettings,
                    size: tuple[int, int] | None) -> float:
        """USD for one image of `model` (at `size` where the price depends on it); a
        model without a published price is estimated at the dearest known."""
        known = cls.PRICES.get(model)
        if known is not None:
            return known[0]
        return max((p[0] for p in cls.PRICES.values()), default=0.0)

    @classmethod
    def bill(cls, settings: EngineSettings | None, seconds: float, *, image: bool = False,
             references: bool = False, size: tuple[int, int] | None = None) -> Bill:
        """One image's bill (no seconds): ``price_per_image`` where the storyboard sets
        it, else `image_price`. `seconds` is ignored (a keyframe is one frame)."""
        chosen = cls.settings_for(settings)
        assert isinstance(chosen, HostedSettings)
        usd = getattr(chosen, "price_per_image", None)
        if usd is None:
            usd = cls.image_price(cls.model_for(chosen), chosen, size)
        return Bill(0.0, 0.0, round(usd, 4))

    @classmethod
    def price_per_second(cls, settings: EngineSettings | None = None) -> float:
        return 0.0  # billed per image: see `bill`

    @classmethod
    def wanted_seconds(cls, frames: int, fps: float, condition: int = 0) -> float:
        return 0.0

    # -- one job per image -----------------------------------------------------------------

    def job_for(self, request: SegmentRequest, seed: int) -> Job:
        """The image job for one candidate of a keyframe request."""
        size = (request.width, request.height)
        references = [png_file(path) for path in request.references]
        return Job(prompt=request.prompt, negative_prompt=request.negative_prompt, seconds=0.0,
                   aspect=self.fit_aspect(self.model, request.width, request.height),
                   references=references, seed=seed, model=self.model,
                   input=dict(self.hosted.input), size=size,
                   bill=self.bill(self.settings, 0.0, references=bool(references), size=size))

    def _take(self, request: SegmentRequest, jobs: JobBook, seed: int, job: Job,
              entry: Mapping[str, Any]) -> Take | TakeFailure:
        """The downloaded image as a one-frame take of exactly the request's size."""
        path = jobs.video(seed)  # the journal's download slot holds the image bytes
        try:
            picture = decode_image(path)
        except ValueError as exc:
            jobs.failed(seed, "the downloaded image is unreadable")
            return TakeFailure(seed, f"{self.PROVIDER} job {entry.get('job')}: the downloaded "
                                     f"image is unreadable ({exc})", {"engine": self.NAME})
        frames = fit_image(picture, request.width, request.height)[None]
        bill = job.bill or self.bill(self.settings, 0.0, size=job.size)
        meta = {"provider": self.PROVIDER, "model": self.model, "job": entry.get("job"),
                "billed_seconds": 0.0, "cost": bill.usd, "aspect": job.aspect,
                "native": f"{picture.shape[1]}x{picture.shape[0]}",
                "references": len(job.references)}
        return Take(frames=frames, seed=seed, label=f"{self.model} image, seed {seed}", meta=meta)


def decode_image(path: Path) -> np.ndarray:
    """A downloaded PNG, JPEG or WebP as uint8 RGB, upright (EXIF orientation applied).

    Raises:
        ValueError: the file is not an image PIL can read.
    """
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            upright = ImageOps.exif_transpose(opened)
            return np.asarray(upright.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(str(exc)) from None


def fit_image(picture: np.ndarray, width: int, height: int) -> np.ndarray:
    """`picture` at exactly width x height: scaled to cover, the centre kept.

    The package's one cover rule for stills (`diffusion.frames.cover`): scale by
    max(width / w, height / h) (Lanczos), then crop ``(excess // 2)`` from the left and
    the top. When one side already matches, nothing is resampled and the result is a
    slice of the picture.
    """
    import numpy as np

    from ..diffusion.frames import cover

    return np.ascontiguousarray(cover(picture, width, height))


def nearest_ratio(ratios: tuple[str, ...], width: int, height: int) -> str:
    """Among ``W:H`` ratios that name a resolution (Runway's), the smallest of those
    nearest in aspect to width x height that covers it, else the largest of them: the
    picture is then cropped, never enlarged where it need not be."""
    wanted = math.log(width / height)

    def shape(ratio: str) -> tuple[int, int]:
        w, _, h = ratio.partition(":")
        return int(w), int(h)

    def distance(ratio: str) -> float:
        w, h = shape(ratio)
        return round(abs(math.log(w / h) - wanted), 3)

    best = min(distance(r) for r in ratios)
    nearest = sorted((r for r in ratios if distance(r) == best),
                     key=lambda r: shape(r)[0] * shape(r)[1])
    covering = [r for r in nearest if shape(r)[0] >= width and shape(r)[1] >= height]
    return covering[0] if covering else nearest[-1]


__all__ = ["KEYFRAME", "ImageEngine", "ImageSettings", "decode_image", "fit_image",
           "nearest_ratio"]
