"""The storyboard, format version 1: what the YAML says, as typed objects.

This module is pure data: pydantic models with per-field checks. Loading (with line
numbers), path resolution and cross-field checks live in `stitchcraft.storyboard.load`.

The models are strict: YAML's types are taken as written (``true`` is not 1 and ``"3"``
is not 3), every number is finite and bounded before it reaches any arithmetic, and a
string gets the same checks in its short form (``title: Hello``) as in its long one
(``title: {text: Hello}``).
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_core.core_schema import ErrorType

from ..timeline import parse_fps
from ..yamlsource import shown, spelled

TRANSITIONS = (
    "cut", "dissolve", "fade", "fadeblack", "fadewhite",
    "wipeleft", "wiperight", "wipeup", "wipedown",
    "slideleft", "slideright", "slideup", "slidedown",
    "circleopen", "circleclose", "radial", "smoothleft", "smoothright",
    "pixelize", "zoomin",
)
# How a shot joins the one before: a plain cut; generated from its last frames (chain) and
# also ending on the next shot's first frame (bridge); or made independently and chosen
# for how well its first frames continue the previous shot's last ones (match).
CONTINUITY = ("cut", "chain", "bridge", "match")
CAMERA_MOVES = ("static", "push-in", "pull-out", "pan-left", "pan-right", "tilt-up",
                "tilt-down", "drift")
FITS = ("cover", "contain", "blur-pad")
SHORT_SOURCE = ("refuse", "hold")  # footage shorter than its shot: refuse it, or hold its last frame
MAX_BLEND_FRAMES = 48  # a cross-fade at a chained join, at most two seconds at 24 fps
CODECS = ("h264", "h265", "av1", "prores")
POSITIONS = ("top", "center", "bottom", "top-left", "top-right", "bottom-left", "bottom-right")

# The colour names ffmpeg's parser knows (libavutil/parse.c), all of which Pillow knows
# too, so a name means the same in a caption (ffmpeg) as on a title card (Pillow).
COLOR_NAMES = frozenset("""
    aliceblue antiquewhite aqua aquamarine azure beige bisque black blanchedalmond blue
    blueviolet brown burlywood cadetblue chartreuse chocolate coral cornflowerblue
    cornsilk crimson cyan darkblue darkcyan darkgoldenrod darkgray darkgreen darkkhaki
    darkmagenta darkolivegreen darkorange darkorchid darkred darksalmon darkseagreen
    darkslateblue darkslategray darkturquoise darkviolet deeppink deepskyblue dimgray
    dodgerblue firebrick floralwhite forestgreen fuchsia gainsboro ghostwhite gold
    goldenrod gray green greenyellow honeydew hotpink indianred indigo ivory khaki
    lavender lavenderblush lawngreen lemonchiffon lightblue lightcoral lightcyan
    lightgoldenrodyellow lightgreen lightgrey lightpink lightsalmon lightseagreen
    lightskyblue lightslategray lightsteelblue lightyellow lime limegreen linen magenta
    maroon mediumaquamarine mediumblue mediumorchid mediumpurple mediumseagreen
    mediumslateblue mediumspringgreen mediumturquoise mediumvioletred midnightblue
    mintcream mistyrose moccasin navajowhite navy oldlace olive olivedrab orange
    orangered orchid palegoldenrod palegreen paleturquoise palevioletred papayawhip
    peachpuff peru pink plum powderblue purple red rosybrown royalblue saddlebrown
    salmon sandybrown seagreen seashell sienna silver skyblue slateblue slategray snow
    springgreen steelblue tan teal thistle tomato turquoise violet wheat white
    whitesmoke yellow yellowgreen
""".split())

MAX_SECONDS = 3600
TITLE_CHARACTERS = 500
CAPTION_CHARACTERS = 2000
PROMPT_CHARACTERS = 4000
PATH_CHARACTERS = 1024
CAST_IMAGES = 16


def check_color(value: str) -> str:
    """Accepts ``#rrggbb`` or a name from `COLOR_NAMES` (any case).

    Raises:
        ValueError: anything else, with the closest name when there is one.
    """
    if re.fullmatch(r"#[0-9a-fA-F]{6}", value) or value.lower() in COLOR_NAMES:
        return value
    close = difflib.get_close_matches(value.lower(), COLOR_NAMES, n=1, cutoff=0.75)
    hint = f"did you mean '{close[0]}'?" if close else "e.g. white, black, gold or #1a2b3c"
    raise ValueError(f"'{shown(value)}' is not a colour: use #rrggbb or a colour name ffmpeg "
                     f"knows; {hint}")


def check_path(value: str) -> str:
    """Accepts a file path the operating system can be asked about.

    Raises:
        ValueError: empty, a NUL character, or longer than `PATH_CHARACTERS`.
    """
    if not value.strip():
        raise ValueError("the path is empty")
    if "\x00" in value:
        raise ValueError("a path cannot contain a NUL character")
    if len(value) > PATH_CHARACTERS:
        raise ValueError(f"the path is {len(value)} characters; at most {PATH_CHARACTERS}")
    return value


def check_cast_name(value: str) -> str:
    """Accepts a cast member's name: the word written ``{name}`` in prompts.

    Raises:
        ValueError: not a letter or underscore followed by letters, digits and
            underscores (at most 64 in all).
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", value):
        raise ValueError(f"'{shown(value)}' is not a cast name: use letters, digits and _, "
                         "starting with a letter (prompts write it as {name})")
    return value


PositiveSeconds = Annotated[float, Field(gt=0, le=MAX_SECONDS)]
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS)]
Color = Annotated[str, AfterValidator(check_color)]
FilePath = Annotated[str, AfterValidator(check_path)]
TitleText = Annotated[str, Field(min_length=1, max_length=TITLE_CHARACTERS)]
CaptionText = Annotated[str, Field(min_length=1, max_length=CAPTION_CHARACTERS)]
PromptText = Annotated[str, Field(min_length=1, max_length=PROMPT_CHARACTERS)]
CastName = Annotated[str, AfterValidator(check_cast_name)]
EngineName = Annotated[str, Field(min_length=1, max_length=64)]
AxisValue = str | int | float  # a value of a ``matrix:`` axis, or one of its fields


class Model(BaseModel):
    """Storyboard models reject unknown keys and never coerce types silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def parse_size(value: Any) -> tuple[int, int]:
    """``"1280x720"`` or ``[1280, 720]`` -> (1280, 720); both sides even, 16-8192."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*", value)
        if not m:
            raise ValueError(f"'{shown(value)}' is not a size like 1280x720")
        width, height = int(m.group(1)), int(m.group(2))
    elif isinstance(value, list | tuple) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        width, height = value
    else:
        raise ValueError(f"expected a size like 1280x720 or [1280, 720], got {shown(value)}")
    for side in (width, height):
        if not 16 <= side <= 8192:
            raise ValueError(f"size {shown(width)}x{shown(height)}: each side must be 16-8192 pixels")
        if side % 2:
            raise ValueError(f"size {width}x{height}: both sides must be even for yuv420p video")
    return width, height


class Transition(Model):
    """How a shot begins: the join from the previous shot into this one.

    ``fade`` goes through ``color`` (black by default); on the first shot only ``cut``
    and ``fade`` (a fade in from the colour) mean anything.
    """

    type: Literal[TRANSITIONS] = "cut"  # type: ignore[valid-type]
    duration: float = Field(default=0.5, ge=0, le=60)
    color: Literal["black", "white"] = "black"

    @model_validator(mode="after")
    def _cut_has_no_length(self) -> Transition:
        if self.type == "cut" and "duration" in self.model_fields_set and self.duration:
            raise ValueError("a cut has no duration; use dissolve or fade for a timed join")
        return self

    @property
    def seconds(self) -> float:
        return 0.0 if self.type == "cut" else self.duration


class Ending(Model):
    """How the programme ends: a fade out to a colour."""

    type: Literal["cut", "fade"] = "fade"
    duration: float = Field(default=1.0, ge=0, le=60)
    color: Literal["black", "white"] = "black"


class Text(Model):
    """A caption or title burned into a shot."""

    content: CaptionText
    position: Literal[POSITIONS] = "bottom"  # type: ignore[valid-type]
    size: float = Field(default=0.06, gt=0, le=1, description="text height as a fraction of frame height")
    color: Color = "white"
    box: bool = False
    font: FilePath | None = None
    start: Seconds = Field(default=0, description="seconds after the shot begins")
    duration: PositiveSeconds | None = None
    fade: float = Field(default=0.3, ge=0, le=10)


class Title(Model):
    """A title card: big text on a colour, with simple animation."""

    text: TitleText
    subtitle: Annotated[str, Field(max_length=TITLE_CHARACTERS)] | None = None
    background: Color = "#101018"
    color: Color = "white"
    animation: Literal["none", "fade", "rise", "zoom"] = "fade"
    font: FilePath | None = None


class Output(Model):
    """Where and how the final cut is encoded."""

    fps: float | int | str = 24
    size: str | list[int] = "1280x720"
    path: FilePath = "out/render.mp4"
    codec: Literal[CODECS] = "h264"  # type: ignore[valid-type]
    preset: str = Field(default="veryfast", pattern=r"^[a-z0-9]+$")
    crf: int = Field(default=20, ge=0, le=63)
    fit: Literal[FITS] = "cover"  # type: ignore[valid-type]

    # Checked before the type, so a wrong value gets one message saying what a rate or a
    # size looks like rather than one complaint per member of the union.
    @field_validator("fps", mode="before")
    @classmethod
    def _fps(cls, value: Any) -> Any:
        parse_fps(value)
        return value

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        parse_size(value)
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.lower().endswith((".mp4", ".mov", ".mkv")):
            raise ValueError("the output file must end in .mp4, .mov or .mkv")
        return value

    @property
    def frame_rate(self) -> Fraction:
        return parse_fps(self.fps)

    @property
    def dimensions(self) -> tuple[int, int]:
        return parse_size(self.size)


class OutputOverride(Model):
    """A variant's changes to `output` (every field optional)."""

    fps: float | int | str | None = None
    size: str | list[int] | None = None
    path: FilePath | None = None
    codec: Literal[CODECS] | None = None  # type: ignore[valid-type]
    preset: str | None = None
    crf: int | None = Field(default=None, ge=0, le=63)
    fit: Literal[FITS] | None = None  # type: ignore[valid-type]

    _fps = field_validator("fps", mode="before")(lambda cls, v: v if v is None else Output._fps(v))
    _size = field_validator("size", mode="before")(lambda cls, v: v if v is None else Output._size(v))


class Defaults(Model):
    engine: str = "ltx-video"
    keyframe_engine: EngineName = Field(
        default="flux", description="the image engine that makes keyframes a shot does not "
                                    "give an engine of its own")
    candidates: int = Field(default=3, ge=1, le=64)
    transition: Transition = Transition()
    seed: int = Field(default=0, ge=0, lt=2**32)
    steps: int | None = Field(default=None, ge=1, le=500)
    short_source: Literal[SHORT_SOURCE] = "refuse"  # type: ignore[valid-type]
    colour_anchor: bool = Field(default=True, description=(
        "hold chained takes' colours to their chain's first take (or the shot's reference)"))
    blend: int | None = Field(default=None, ge=0, le=MAX_BLEND_FRAMES, description=(
        "frames cross-faded where a chained take joins the one before (default: the frames "
        "the engine made again from the conditioning; 0: a hard join)"))


class Audio(Model):
    """The programme's sound: a music bed, a voice-over, and the loudness target."""

    music: FilePath | None = None
    voiceover: FilePath | None = None
    loudness: float = Field(default=-14.0, ge=-40, le=-5)
    true_peak: float = Field(default=-1.0, ge=-9, le=0)
    music_volume: float = Field(default=0.0, ge=-60, le=12, description="dB")
    duck: float = Field(default=-12.0, ge=-40, le=0, description="dB under the voice-over")
    music_fade: float = Field(default=1.0, ge=0, le=30)
    take_audio: bool = True


class CastMember(Model):
    """A character who appears in several shots: the words ``{name}`` stands for in a
    prompt, and pictures of them that condition the engines which take references."""

    description: PromptText
    images: list[FilePath] = Field(default_factory=list, max_length=CAST_IMAGES)


class Style(Model):
    """The look of the whole programme: words appended to every generated prompt, and
    pictures that condition the engines which take references."""

    description: PromptText | None = None
    images: list[FilePath] = Field(default_factory=list, max_length=CAST_IMAGES)

    @model_validator(mode="after")
    def _says_something(self) -> Style:
        if self.description is None and not self.images:
            raise ValueError("a style needs a description, images or both")
        return self


class Keyframe(Model):
    """A still made by an image engine before a shot, which the shot's engine animates.

    Attributes:
        prompt: What the still shows (default: the shot's prompt); may name the cast
            as ``{name}``.
        engine: The image engine (default: ``defaults.keyframe_engine``).
        candidates: Stills to make and choose from (default: the shot's candidates).
    """

    prompt: PromptText | None = None
    engine: EngineName | None = None
    candidates: int | None = Field(default=None, ge=1, le=64)


class ImagePrompt(Keyframe):
    """``image: {prompt: ...}``: an image shot whose still is generated (a keyframe)."""

    prompt: PromptText


class Shot(Model):
    """One shot of the storyboard: exactly one of prompt, source, image or title (an
    image may also carry a prompt, passed to image-to-video engines).

    ``image:`` is a file, or an `ImagePrompt` for a still an image engine makes first;
    ``keyframe:`` (a prompt, or a `Keyframe`) makes a prompt shot start from such a still.
    """

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    duration: PositiveSeconds
    prompt: PromptText | None = None
    source: FilePath | None = None
    image: FilePath | ImagePrompt | None = None
    title: TitleText | Title | None = None
    negative_prompt: Annotated[str, Field(max_length=PROMPT_CHARACTERS)] | None = None
    engine: str | None = None
    candidates: int | None = Field(default=None, ge=1, le=64)
    seed: int | None = Field(default=None, ge=0, lt=2**32)
    steps: int | None = Field(default=None, ge=1, le=500)
    continuity: Literal[CONTINUITY] = "cut"  # type: ignore[valid-type]
    reference: FilePath | None = None
    cast: list[CastName] = Field(default_factory=list, max_length=64,
                                 description="cast members who appear, besides those the prompt names")
    keyframe: PromptText | Keyframe | None = None
    camera: Literal[CAMERA_MOVES] | None = None  # type: ignore[valid-type]
    text: CaptionText | Text | None = None
    transition: Transition | None = None
    pick: Annotated[str, Field(min_length=1, max_length=64)] | Annotated[int, Field(ge=0, le=10_000)] | None = None
    fit: Literal[FITS] | None = None  # type: ignore[valid-type]
    volume: float = Field(default=0.0, ge=-60, le=12, description="dB applied to the take's own audio")
    short_source: Literal[SHORT_SOURCE] | None = None  # type: ignore[valid-type]
    colour_anchor: bool | None = None
    blend: int | None = Field(default=None, ge=0, le=MAX_BLEND_FRAMES)
    fallback: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=8,
        description="engines to use, in order, when the shot's engine cannot run here or "
                    "fails every candidate")

    @model_validator(mode="after")
    def _one_content(self) -> Shot:
        given = [k for k in ("prompt", "source", "image", "title") if getattr(self, k) is not None]
        if self.image is not None and self.prompt is not None:
            given.remove("prompt")  # an image shot's prompt says what happens in it
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(f"a shot needs exactly one of prompt, source, image or title (found: {found}); "
                             "an image may carry a prompt saying what happens in it")
        if self.continuity in ("chain", "bridge") and self.kind != "prompt":
            raise ValueError(f"continuity: {self.continuity} needs a generated (prompt) shot; "
                             "to choose the take that best continues the previous shot, use "
                             "'continuity: match'")
        if self.continuity == "match" and self.kind == "title":
            raise ValueError("continuity: match needs takes to choose between (footage, a "
                             "prompt or an image); a title card has one")
        return self

    @property
    def kind(self) -> str:
        for key in ("image", "prompt", "source", "title"):
            if getattr(self, key) is not None:
                return key
        raise AssertionError("validated shot has no content")

    @property
    def image_file(self) -> str | None:
        """The still an image shot starts from when it is a file, else None."""
        return self.image if isinstance(self.image, str) else None

    @property
    def keyframe_spec(self) -> Keyframe | None:
        """The shot's own keyframe as a `Keyframe`: ``keyframe:`` in either form, or
        ``image: {prompt: ...}``; None when it asks for none."""
        if isinstance(self.image, ImagePrompt):
            return self.image
        if isinstance(self.keyframe, str):
            return Keyframe(prompt=self.keyframe)
        return self.keyframe

    @property
    def title_card(self) -> Title | None:
        if self.title is None:
            return None
        return Title(text=self.title) if isinstance(self.title, str) else self.title

    @property
    def caption(self) -> Text | None:
        if self.text is None:
            return None
        return Text(content=self.text) if isinstance(self.text, str) else self.text


class ShotOverride(Model):
    """A variant's changes to one shot (language, product, framing)."""

    # What the shot shows: a variant that changes one of them replaces the shot's others
    # (`LoadedStoryboard.for_variant`), so an image shot can become a prompt shot.
    CONTENT: ClassVar[tuple[str, ...]] = ("prompt", "source", "image", "title")

    prompt: PromptText | None = None
    source: FilePath | None = None
    image: FilePath | None = None
    title: TitleText | Title | None = None
    text: CaptionText | Text | None = None
    fit: Literal[FITS] | None = None  # type: ignore[valid-type]

    @property
    def image_file(self) -> str | None:
        return self.image


class Variant(Model):
    """A deliverable made from the same takes: another size, language or product."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    output: OutputOverride = OutputOverride()
    shots: dict[str, ShotOverride] = Field(default_factory=dict)
    audio: Audio | None = None


class EngineSettings(Model):
    """The settings every engine takes, under ``engines.<name>:``.

    An engine with more settings declares a subclass as its ``SETTINGS`` (the diffusion
    engines add ``guidance``, ``offload``, ...; footage adds ``library``), and its block
    is validated against that model (`engine_blocks`).
    """

    # Fields that say where or how fast an engine runs, not what it makes: left out of
    # an engine's fingerprint, so changing them never regenerates a take.
    PLACEMENT: ClassVar[frozenset[str]] = frozenset({"device", "batch"})

    model: FilePath | None = Field(default=None, description="a model id or a local checkpoint")
    revision: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="the model id's revision (branch, tag or commit)")
    device: Literal["auto", "cuda", "cpu", "mps"] = "auto"
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    steps: int | None = Field(default=None, ge=1, le=500)
    batch: int | None = Field(default=None, ge=1, le=64)

    def pixel_settings(self) -> dict[str, Any]:
        """The settings that decide pixels, for the engine's fingerprint."""
        return self.model_dump(mode="json", exclude=set(self.PLACEMENT))

    def with_paths_resolved(self, resolve: Callable[[str], Path]) -> Self:
        """These settings with storyboard-relative file paths made absolute by `resolve`."""
        return self

    def file_problems(self, resolve: Callable[[str], Path]) -> dict[str, str]:
        """Field -> what is wrong with the file it names (checked with the storyboard's
        files); empty when nothing is."""
        return {}


class DraftSettings(Model):
    """``engines.draft``: not an engine, but where ``--quality draft`` sends generated shots."""

    engine: str | None = Field(default=None, description="the draft engine (default ltx-video)")
    steps: int | None = Field(default=None, ge=1, le=500)
    model: str | None = Field(default=None, max_length=200,
                              description="the draft engine's model in drafts (a hosted fast model)")


def engine_blocks(value: Any) -> Any:
    """Validates each ``engines.<name>:`` block against that engine's settings model.

    Errors keep their place (``engines.wan.guidance``); an unknown engine name, or a
    plug-in that cannot be loaded, is an error at the name.
    """
    if not isinstance(value, dict):
        return value  # pydantic says what a mapping is
    from ..engines import settings_model
    from ..errors import ConfigError

    blocks: dict[Any, Any] = {}
    errors: list[Any] = []
    for name, block in value.items():
        if not isinstance(name, str):
            blocks[name] = block  # pydantic refuses the key
            continue
        try:
            model: type[BaseModel] = DraftSettings if name == "draft" else settings_model(name)
        except ConfigError as exc:  # unknown, or a plug-in that will not load
            errors.append({"type": PydanticCustomError("engine_name", "{message}", {"message": str(exc)}),
                           "loc": (name,), "input": block})
            continue
        try:
            blocks[name] = model.model_validate(block)
        except ValidationError as exc:
            errors += [_placed(error, name) for error in exc.errors(include_url=False)]
    if errors:
        raise ValidationError.from_exception_data("engines", errors)
    return blocks


_ERROR_TYPES = frozenset(typing.get_args(ErrorType))


def _placed(error: Any, name: str) -> dict[str, Any]:
    """A block's validation error, raised again under the block's name."""
    kind: Any = error["type"]
    if kind not in _ERROR_TYPES:  # a plug-in's own error type: keep its words
        kind = PydanticCustomError(kind, "{message}", {"message": error["msg"]})
    return {"type": kind, "loc": (name, *error["loc"]), "input": error["input"],
            **({"ctx": error["ctx"]} if "ctx" in error and kind is error["type"] else {})}


class Scoring(Model):
    """How takes are scored and chosen.

    Attributes:
        beam: Partial cuts the search keeps (1 is greedy).
        beam_generate: Of those, how many (the best) a chained or bridged segment is
            generated from; the others are not extended by it. None: all of them. Each
            costs the segment's candidates again, and `stitch plan` counts them.
    """

    weights: dict[str, float] = Field(default_factory=dict)
    beam: int = Field(default=1, ge=1, le=16)
    beam_generate: int | None = Field(default=None, ge=1, le=16,
                                      description="partial cuts a chained segment is made from")
    seam_threshold: float = Field(default=0.35, ge=0, le=1)
    clip_model: FilePath | None = None
    lpips_weights: FilePath | None = None

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        for name, weight in value.items():
            if not 0 <= weight <= 100:
                raise ValueError(f"weight of '{name}' must be between 0 and 100")
        return value


class Storyboard(Model):
    """A whole storyboard file."""

    version: Literal[1]
    title: Annotated[str, Field(max_length=TITLE_CHARACTERS)] = "Untitled"
    output: Output = Output()
    defaults: Defaults = Defaults()
    cast: dict[CastName, CastMember] = Field(default_factory=dict, max_length=64)
    style: Style | None = None
    audio: Audio = Audio()
    ending: Ending | None = None
    subtitles: FilePath | None = None
    subtitles_mode: Literal["burn", "track"] = "track"
    logo: FilePath | None = None
    engines: Annotated[dict[str, EngineSettings | DraftSettings], BeforeValidator(engine_blocks)] = Field(
        default_factory=dict)
    scoring: Scoring = Scoring()
    shots: list[Shot] = Field(min_length=1, max_length=2000)
    variants: list[Variant] = Field(default_factory=list)
    matrix: dict[str, list[AxisValue] | dict[str, dict[str, AxisValue] | None]] = Field(
        default_factory=dict, description="axes whose combinations are the variants; "
                                          "`stitchcraft.storyboard.matrix` expands them into `variants` when loading")

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value != 1:
            raise ValueError(f"this stitchcraft reads storyboard format 1, not {shown(value)}")
        if value != 1 or isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be the number 1 (write `version: 1`), got {spelled(value)}")
        return value

    def engine_settings(self, name: str) -> EngineSettings:
        """Engine `name`'s settings: its ``engines:`` block, or its model's defaults.

        Raises:
            ConfigError: no engine has that name, or its plug-in cannot be loaded.
        """
        block = self.engines.get(name)
        if isinstance(block, EngineSettings):
            return block
        from ..engines import settings_model

        return settings_model(name)()

    @property
    def draft_engine(self) -> str:
        """The engine `--quality draft` routes generated shots to."""
        draft = self.engines.get("draft")
        return (draft.engine if isinstance(draft, DraftSettings) else None) or "ltx-video"

    def for_quality(self, quality: str) -> Storyboard:
        """The storyboard a render at `quality` uses: for a draft whose ``engines.draft``
        names a model, the draft engine's settings with that model."""
        draft = self.engines.get("draft")
        if quality != "draft" or not isinstance(draft, DraftSettings) or not draft.model:
            return self
        settings = self.engine_settings(self.draft_engine).model_copy(update={"model": draft.model})
        return self.model_copy(update={"engines": {**self.engines, self.draft_engine: settings}})

    @property
    def draft_steps(self) -> int:
        draft = self.engines.get("draft")
        return (draft.steps if isinstance(draft, DraftSettings) else None) or 8
