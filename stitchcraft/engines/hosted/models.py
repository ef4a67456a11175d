"""What the aggregators' hosted models take: field names, durations, aspects, prices.

fal and Replicate host many video models behind one job API each, and every model names
its inputs its own way (``image_url``, ``start_image``, ``first_frame_image``), takes its
duration in seconds (as a number or a string) or as a frame count, and has its own price.
A `ModelSpec` says this for one model; each aggregator keeps a small table of well-known
models, and `spec_for` answers for any other model with conservative generic names.

For a model in the table, the ``input:`` mapping of the engine's settings is validated
against the model's published schema (`check_input`); for any other model it is passed
through as written.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..base import Capabilities
from .base import Bill, HostedEngine, HostedSettings


@dataclass(frozen=True)
class Range:
    """An inclusive numeric range an ``input:`` value must lie in."""

    low: float
    high: float


# Values an ``input:`` key may take: a tuple of allowed values, a numeric `Range`,
# `bool`, or None for any value.
Allowed = tuple[Any, ...] | type | Range | None


@dataclass(frozen=True)
class ModelSpec:
    """One hosted video model's input schema, as far as stitchcraft fills it.

    Attributes:
        name: The aggregator's model name (``owner/name`` or the fal app id).
        prompt, image, last_image, duration, aspect, seed, negative_prompt: The input
            fields holding each, None where the model has none.
        durations: Seconds the model makes, ascending (for a frame-count model, the
            allowed counts over `fps`).
        duration_str: The duration is sent as a string (``"5"``), not a number.
        frames: The frame-count field (``num_frames``) for a model sized in frames.
        frame_counts: Allowed counts: (first, last, step).
        fps: The rate a frame-count model renders at (and its ``fps_field``).
        fps_field: Where the rate is sent, None to leave the model's default.
        aspects: Aspect ratios it can make; ``aspect`` None means the video follows its
            first frame (or the model's one shape).
        needs_image: The model only animates an image (no text-to-video).
        options: Other ``input:`` keys the model takes, with the values allowed.
        price: USD per generated second at the model's default settings, the date it was
            read and where (None where no published price was found: the engine then
            estimates with the highest price it knows).
        price_by: The ``input:`` key the price depends on and USD per second for each of
            its values (a value not listed, or the key unset, is billed at `price`).
        billed_from: The fewest seconds billed for a take (fal bills its Kling 2.1 per 5 s
            first, then per second).
        known: The model is in a table (its ``input:`` is validated).
        last_image_needs: An ``input:`` key and value without which the model refuses
            a last frame.
    """

    name: str
    prompt: str | None = "prompt"
    image: str | None = None
    last_image: str | None = None
    duration: str | None = "duration"
    aspect: str | None = None
    seed: str | None = None
    negative_prompt: str | None = None
    durations: tuple[float, ...] = (5.0,)
    duration_str: bool = False
    frames: str | None = None
    frame_counts: tuple[int, int, int] | None = None
    fps: int = 24
    fps_field: str | None = None
    aspects: tuple[str, ...] = ("16:9",)
    needs_image: bool = False
    options: Mapping[str, Allowed] = field(default_factory=dict)
    price: tuple[float, str, str] | None = None
    known: bool = True
    last_image_needs: tuple[str, Any] | None = None
    price_by: tuple[str, Mapping[Any, float]] | None = None
    billed_from: float = 0.0

    def charge(self, seconds: float, values: Mapping[str, Any],
               unknown: float) -> tuple[float, float]:
        """(billed seconds, USD) of a take asking `seconds` with these ``input:`` values;
        `unknown` is the rate used where the model has no published price."""
        rate = self.price[0] if self.price else unknown
        if self.price_by is not None:
            key, rates = self.price_by
            if key in values:
                rate = rates.get(values[key], rate)
        billed = max(seconds, self.billed_from)
        return billed, billed * rate

    def takes_last_image(self, values: Mapping[str, Any]) -> bool:
        """Whether a last frame can be sent with these ``input:`` values (some models
        take one only in a mode: Kling 2.1 on Replicate in ``mode: pro``)."""
        if self.last_image is None:
            return False
        if self.last_image_needs is None:
            return True
        key, wanted = self.last_image_needs
        return values.get(key) == wanted

    @property
    def managed(self) -> tuple[str, ...]:
        """The input fields stitchcraft fills itself from the storyboard."""
        return tuple(f for f in (self.prompt, self.image, self.last_image, self.duration,
                                 self.aspect, self.seed, self.negative_prompt, self.frames,
                                 self.fps_field) if f)

    def frame_count(self, seconds: float) -> int:
        """The allowed frame count for a duration from `durations`."""
        assert self.frame_counts is not None
        first, last, step = self.frame_counts
        wanted = int(round(seconds * self.fps))
        return min(max(first, first + math.ceil((wanted - first) / step) * step), last)

    def build_input(self, *, prompt: str | None, negative_prompt: str | None, seconds: float,
                    aspect: str, seed: int, first_image: str | None, last_image: str | None,
                    extra: Mapping[str, Any]) -> dict[str, Any]:
        """The ``input`` object of one job: the storyboard's fields under this model's
        names, then the settings' ``input:`` (which, for an unknown model, may also set
        or override any field)."""
        body: dict[str, Any] = {}
        if self.prompt:
            body[self.prompt] = prompt or ""
        if first_image is not None:
            assert self.image is not None
            body[self.image] = first_image
        if last_image is not None:
            assert self.last_image is not None
            body[self.last_image] = last_image
        if self.frames:
            body[self.frames] = self.frame_count(seconds)
            if self.fps_field:
                body[self.fps_field] = self.fps
        elif self.duration:
            whole = int(round(seconds))
            body[self.duration] = str(whole) if self.duration_str else whole
        if self.aspect and first_image is None:
            body[self.aspect] = aspect  # with an image, the video follows its shape
        if self.seed:
            body[self.seed] = seed
        if self.negative_prompt and negative_prompt:
            body[self.negative_prompt] = negative_prompt
        body.update(extra)
        return body

    def check_input(self, values: Mapping[str, Any]) -> None:
        """Checks an ``input:`` mapping against the model's schema.

        Raises:
            ValueError: a key the model does not take, a field stitchcraft fills from the
                storyboard, or a value outside what the model allows.
        """
        if not self.known:
            return
        for key, value in values.items():
            if key in self.managed:
                raise ValueError(f"input.{key} is filled by stitchcraft for {self.name} (from "
                                 "the shot's prompt, image, duration, aspect or seed); set it "
                                 "in the storyboard instead")
            if key not in self.options:
                known = ", ".join(sorted(self.options)) or "none"
                raise ValueError(f"input.{key} is not an input of {self.name} (it takes: {known})")
            allowed = self.options[key]
            if allowed is None:
                continue
            if allowed is bool:
                if not isinstance(value, bool):
                    raise ValueError(f"input.{key} of {self.name} must be true or false")
            elif isinstance(allowed, Range):
                if isinstance(value, bool) or not isinstance(value, int | float) \
                        or not allowed.low <= value <= allowed.high:
                    raise ValueError(f"input.{key} of {self.name} must be a number from "
                                     f"{allowed.low:g} to {allowed.high:g}")
            elif isinstance(allowed, tuple) and value not in allowed:
                raise ValueError(f"input.{key} of {self.name} must be one of "
                                 f"{', '.join(map(repr, allowed))}, not {value!r}")


def frame_durations(first: int, last: int, step: int, fps: int) -> tuple[float, ...]:
    """Durations of the allowed frame counts first, first+step, ... last at `fps`."""
    return tuple(n / fps for n in range(first, last + 1, step))


def spec_for(table: Mapping[str, ModelSpec], model: str, generic: ModelSpec) -> ModelSpec:
    """The table's spec for `model`, or `generic` renamed for it (unknown models)."""
    found = table.get(model)
    if found is not None:
        return found
    from dataclasses import replace

    return replace(generic, name=model, known=False)


def highest_price(table: Mapping[str, ModelSpec]) -> float:
    """The highest published price in a table: the conservative estimate for a model
    whose price is not known."""
    return max(spec.price[0] for spec in table.values() if spec.price)


class TableEngine(HostedEngine):
    """An aggregator's engine whose models are described by a table of `ModelSpec`s
    (fal, Replicate): what each model makes and costs is read from its spec, an unknown
    model's from the table's generic spec and, for its price, the dearest known."""

    MODELS: ClassVar[Mapping[str, ModelSpec]] = {}
    GENERIC: ClassVar[ModelSpec]

    @classmethod
    def spec(cls, model: str) -> ModelSpec:
        return spec_for(cls.MODELS, model, cls.GENERIC)

    @classmethod
    def durations(cls, model: str) -> tuple[float, ...]:
        return cls.spec(model).durations

    @classmethod
    def aspects(cls, model: str, *, image: bool = False) -> tuple[str, ...]:
        return cls.spec(model).aspects  # from an image, the video follows its shape

    @classmethod
    def model_capabilities(cls, model: str) -> Capabilities:
        spec = cls.spec(model)
        return Capabilities(kinds=frozenset({"prompt", "image"}), text_to_video=not spec.needs_image,
                            image_to_video=spec.image is not None,
                            first_last_frame=spec.last_image is not None and spec.last_image_needs is None,
                            condition_frames=1)

    @classmethod
    def capabilities_for(cls, settings: Any = None) -> Capabilities:
        """The model's, with a last frame where its ``input:`` allows one."""
        found = super().capabilities_for(settings)
        chosen = cls.settings_for(settings)
        assert isinstance(chosen, HostedSettings)
        spec = cls.spec(cls.model_for(chosen))
        return dataclasses.replace(found, first_last_frame=spec.takes_last_image(chosen.input))

    @classmethod
    def tariff(cls, model: str, settings: HostedSettings, seconds: float, *, image: bool,
               references: bool) -> Bill:
        """The model's price for its ``input:`` (an unknown model: the dearest known)."""
        asked = cls.fit_duration(model, seconds)
        billed, usd = cls.spec(model).charge(asked, settings.input, highest_price(cls.MODELS))
        return Bill(asked, billed, usd)


__all__ = ["ModelSpec", "Range", "TableEngine", "frame_durations", "highest_price", "spec_for"]
