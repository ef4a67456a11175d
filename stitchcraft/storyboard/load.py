"""Load and validate a storyboard: YAML with positions, typed model, cross-field checks.

Loading is three steps: parse the YAML into the typed model, `resolve_sources` (what
each ``source:`` folder or glob expands to), and `check_storyboard`, which only
reports. Everything a user can get wrong is caught here, before anything runs, and
reported as `Issue`s with file, line, column and field path. Paths resolve relative to
the storyboard file. Referenced files are opened the way their stage will read them
(fonts, images, subtitles), so a file that only has the right name is refused here too.
"""

from __future__ import annotations

import dataclasses
import difflib
import glob
import os
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from ..errors import Issue, StoryboardError
from ..media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from ..timeline import seconds_to_frames
from ..yamlsource import FieldPath, Located, load_yaml, shown, spelled
from . import (
    DraftSettings,
    EngineSettings,
    Shot,
    ShotOverride,
    Storyboard,
    Title,
    Transition,
    Variant,
)

if TYPE_CHECKING:
    from .cast import KeyframeSpec, ReferenceRoute

MAX_FILE_BYTES = 4 * 1024 * 1024
AUDIO_EXTENSIONS = (".mp3", ".wav", ".m4a", ".aac", ".flac", ".ogg", ".opus", *VIDEO_EXTENSIONS)
SUBTITLE_EXTENSIONS = (".srt", ".ass", ".ssa", ".vtt")
FONT_EXTENSIONS = (".ttf", ".otf", ".ttc")
FIRST_SHOT_TRANSITIONS = ("cut", "fade")


@dataclass
class LoadedStoryboard:
    """A validated storyboard and where it came from.

    Attributes:
        path: The storyboard file.
        storyboard: The typed storyboard.
        located: The raw YAML with positions, for messages raised later.
        sources: Shot id (``variant/shot id`` for a variant's override) -> the footage
            files its `source:` expands to; filled by `resolve_sources`.
    """

    path: Path
    storyboard: Storyboard
    located: Located
    sources: dict[str, list[Path]]

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, value: str | os.PathLike[str]) -> Path:
        """A storyboard path, made absolute relative to the storyboard's folder."""
        return resolve_path(self.base_dir, value)

    def engine_settings(self, name: str) -> EngineSettings:
        """The settings engine `name` runs with: its ``engines:`` block (or its
        defaults) with storyboard-relative paths made absolute.

        Raises:
            ConfigError: no engine has that name, or its plug-in cannot be loaded.
        """
        return self.storyboard.engine_settings(name).with_paths_resolved(self.resolve)

    def blend(self, shot_id: str) -> int | None:
        """Frames cross-faded where the shot's chained takes join (None: the whole lead)."""
        spec = self.shot(shot_id)
        return self.storyboard.defaults.blend if spec.blend is None else spec.blend

    def colour_anchor(self, shot_id: str) -> bool:
        """Whether the shot's chained takes are colour-anchored to their chain's start."""
        spec = self.shot(shot_id)
        return self.storyboard.defaults.colour_anchor if spec.colour_anchor is None else spec.colour_anchor

    def for_quality(self, quality: str) -> LoadedStoryboard:
        """This storyboard as a render at `quality` sees it (`Storyboard.for_quality`)."""
        routed = self.storyboard.for_quality(quality)
        return self if routed is self.storyboard else dataclasses.replace(self, storyboard=routed)

    def for_variant(self, variant: Variant) -> LoadedStoryboard:
        """The storyboard a variant renders: its shots with the variant's changes applied
        (a changed content field replaces the shot's others), its audio if it has its own.

        Takes are made at the main output's size, so a variant that only reframes or
        re-captions shares every take with the main cut.
        """
        sb = self.storyboard
        if not variant.shots and variant.audio is None:
            return self
        content_keys = set(ShotOverride.CONTENT)
        shots = []
        sources = dict(self.sources)
        for shot in sb.shots:
            override = variant.shots.get(shot.id)
            if override is None:
                shots.append(shot)
                continue
            fields = shot.model_dump(exclude_unset=True)
            changes = override.model_dump(include=override.model_fields_set)
            if content_keys & set(changes):
                fields = {k: v for k, v in fields.items() if k not in content_keys}
            fields.update(changes)
            if "source" in changes:
                sources[shot.id] = self.sources.get(f"{variant.name}/{shot.id}", [])
            shots.append(type(shot).model_validate(fields))
        update: dict[str, Any] = {"shots": shots}
        if variant.audio is not None:
            update["audio"] = variant.audio
        return LoadedStoryboard(self.path, sb.model_copy(update=update), self.located, sources)

    # --- cast, style and keyframes (the rules live in `stitchcraft.storyboard.cast`) -------------

    def shot(self, shot_id: str) -> Shot:
        """The shot with id `shot_id`.

        Raises:
            KeyError: no shot has that id.
        """
        for shot in self.storyboard.shots:
            if shot.id == shot_id:
                return shot
        raise KeyError(shot_id)

    def prompt(self, shot_id: str) -> str | None:
        """The prompt the shot's engine gets (`cast.fill_prompt`: cast descriptions for
        ``{name}``, the style's description appended), or None for a shot without one."""
        from .cast import fill_prompt

        shot = self.shot(shot_id)
        sb = self.storyboard
        return None if shot.prompt is None else fill_prompt(shot.prompt, sb.cast, sb.style)

    def cast_of(self, shot_id: str) -> list[str]:
        """The cast members in a shot: its ``cast:`` list, then those its prompts name."""
        from .cast import shot_cast

        return shot_cast(self.storyboard, self.shot(shot_id))

    def references(self, shot_id: str) -> list[Path]:
        """A shot's reference images by priority (`cast.shot_references`): its own
        ``reference:``, its cast's images in turns, the style's images."""
        from .cast import shot_references

        return shot_references(self, self.shot(shot_id))

    def cast_images(self, shot_id: str) -> dict[str, list[Path]]:
        """Cast member -> images, for the members in a shot who have any (the style's
        images are `style_images`)."""
        from .cast import cast_images

        return cast_images(self, self.shot(shot_id))

    def style_images(self) -> list[Path]:
        """The style's reference images, resolved."""
        style = self.storyboard.style
        return [self.resolve(p) for p in style.images] if style else []

    def reference_route(self, shot_id: str, *, quality: str = "final") -> ReferenceRoute:
        """Where a shot's reference images go, and the keyframe it starts from
        (`cast.route_references`).

        Raises:
            ConfigError: the shot cannot be made as written at this quality (validation
                catches that for ``final``), or its engine cannot be loaded.
        """
        from .cast import route_references

        return route_references(self, self.shot(shot_id), quality=quality).checked()

    def keyframe(self, shot_id: str, *, quality: str = "final") -> KeyframeSpec | None:
        """The still a shot starts from, made by an image engine first: its
        ``keyframe:``, its ``image: {prompt}``, or an implicit one carrying its
        references; None when it starts from none.

        Raises:
            ConfigError: as `reference_route`.
        """
        return self.reference_route(shot_id, quality=quality).keyframe

    def keyframe_prompt(self, shot_id: str, *, quality: str = "final") -> str | None:
        """The final prompt of the shot's keyframe, or None when it has none."""
        keyframe = self.keyframe(shot_id, quality=quality)
        return keyframe.prompt if keyframe else None

    def with_font_resolved(self, styled: Any) -> Any:
        """A caption or title card whose `font` path is resolved like any other; one
        without a `font` gets the font it is drawn in when the default one lacks some of
        its characters and a font on this system has them all (`fonts.font_for`)."""
        if styled is None:
            return styled
        if styled.font:
            return styled.model_copy(update={"font": str(self.resolve(styled.font))})
        from ..fonts import default_font_file, font_for

        default = default_font_file(styled)
        if default is None:  # drawn in Pillow's own font or as fontconfig's "Sans" finds it
            return styled
        title = isinstance(styled, Title)
        text = styled.text + (styled.subtitle or "") if title else styled.content
        drawn_in = font_for(text, default, bold=title)
        return styled if drawn_in == default else styled.model_copy(update={"font": str(drawn_in)})


def resolve_path(base: Path, value: str | os.PathLike[str]) -> Path:
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else (base / path)


def load_storyboard(path: str | os.PathLike[str], *, check_files: bool = True) -> LoadedStoryboard:
    """Reads, parses and validates a storyboard file.

    Args:
        path: The YAML file.
        check_files: Check that referenced media exist (the CLI always does).

    Raises:
        StoryboardError: with every problem found, located.
    """
    path = Path(path).absolute()
    text = _read_text(path)
    located = load_yaml(text, path)
    if not isinstance(located.value, dict):
        raise StoryboardError([located.issue((), "a storyboard is a mapping with version, output and shots")])
    from .matrix import expand_matrix

    document, located = expand_matrix(located, _pydantic_issues)
    try:
        storyboard = Storyboard.model_validate(document)
    except ValidationError as exc:
        raise StoryboardError(_pydantic_issues(exc, located)) from None
    loaded = resolve_sources(LoadedStoryboard(path, storyboard, located, {}))
    issues = check_storyboard(loaded, check_files=check_files)
    if issues:
        raise StoryboardError(issues)
    return loaded


def resolve_sources(loaded: LoadedStoryboard) -> LoadedStoryboard:
    """The storyboard with `sources` filled: every shot's and variant override's
    ``source:`` expanded to its footage files by `expand_source`, never to the
    storyboard's own cuts.

    A source that matches nothing, or cannot be looked for, expands to no files; the
    file checks of `check_storyboard` say why.
    """
    fields = _source_fields(loaded.storyboard)
    own_cuts = _own_cuts(loaded) if fields else frozenset()
    sources: dict[str, list[Path]] = {}
    for key, _, value in fields:
        try:
            sources[key] = expand_source(loaded.base_dir, value, exclude=own_cuts)
        except OSError:
            sources[key] = []
    return dataclasses.replace(loaded, sources=sources)


def _own_cuts(loaded: LoadedStoryboard) -> frozenset[Path]:
    """The cuts a render of this storyboard writes, which a source never offers."""
    from ..outputs import cut_paths

    return frozenset(c.path.resolve() for quality in ("final", "draft")
                     for c in cut_paths(loaded, quality))


def _source_fields(sb: Storyboard) -> list[tuple[str, FieldPath, str]]:
    """(key in `LoadedStoryboard.sources`, field path, value) of every ``source:``."""
    found: list[tuple[str, FieldPath, str]] = []
    for index, shot in enumerate(sb.shots):
        if shot.source is not None:
            found.append((shot.id, ("shots", index, "source"), shot.source))
    for vindex, variant in enumerate(sb.variants):
        for shot_id, override in variant.shots.items():
            if override.source is not None:
                found.append((f"{variant.name}/{shot_id}",
                               ("variants", vindex, "shots", shot_id, "source"), override.source))
    return found


def _read_text(path: Path) -> str:
    def fail(message: str) -> StoryboardError:
        return StoryboardError([Issue(path, None, None, "", message)])

    if not path.exists():
        raise fail("file not found")
    if path.is_dir():
        raise fail("is a folder; give the storyboard's YAML file")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise fail(f"is {size // 1024} KiB; a storyboard is at most {MAX_FILE_BYTES // 1024} KiB")
        raw = path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise StoryboardError([Issue(path, line, None, "", "is not UTF-8 text")]) from None
    if "\x00" in text:
        raise fail("is binary, not YAML text")
    return text


# --- pydantic errors -> located issues ------------------------------------------------

def _pydantic_issues(exc: ValidationError, located: Located) -> list[Issue]:
    found: list[tuple[FieldPath, bool, Any]] = []
    for error in exc.errors(include_url=False):
        path, skipped = _clean_loc(error["loc"], located.value)
        found.append((path, skipped, error))
    issues: dict[tuple[FieldPath, str], Issue] = {}
    for path, skipped, error in found:
        # A value that fits no member of a union yields one error per member; drop the
        # "wrong type" ones when a member of the right type has a more precise complaint.
        if skipped and error["type"].endswith("_type") and any(
                other is not error and other_path[: len(path)] == path and not other["type"].endswith("_type")
                for other_path, _, other in found):
            continue
        message = _message(error, path, located)
        key = (path, message)
        if key not in issues:
            issues[key] = located.issue(path, message)
    # Several "wrong type" complaints for one union field read better as one.
    merged: dict[FieldPath, list[Issue]] = {}
    for (path, _), issue in issues.items():
        merged.setdefault(path, []).append(issue)
    out: list[Issue] = []
    for path, group in merged.items():
        if len(group) > 1 and all(i.message.startswith("expected ") for i in group):
            kinds = [i.message.removeprefix("expected ") for i in group]
            got = {kind.partition(", got ")[2] for kind in kinds}
            if len(got) == 1 and all(", got " in kind for kind in kinds):  # say what came once
                kinds = [kind.partition(", got ")[0] for kind in kinds] + [f"got {got.pop()}"]
                out.append(located.issue(path, f"expected {' or '.join(kinds[:-1])}, {kinds[-1]}"))
            else:
                out.append(located.issue(path, f"expected {' or '.join(kinds)}"))
        else:
            out.extend(group)
    return out


def _clean_loc(loc: tuple[Any, ...], value: Any) -> tuple[FieldPath, bool]:
    """Drops pydantic's union-member tags from a location, following the real data."""
    path: list[str | int] = []
    skipped = False
    current = value
    for index, part in enumerate(loc):
        if isinstance(current, dict) and part in current:
            path.append(part)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            path.append(part)
            current = current[part]
        elif index == len(loc) - 1 and isinstance(current, dict) and isinstance(part, str) and not _is_tag(part):
            path.append(part)  # a missing field
            current = None
        else:
            skipped = True
    return tuple(path), skipped


def _is_tag(part: str) -> bool:
    return (part[:1].isupper() or part in ("str", "int", "float", "bool", "list[int]", "dict")
            or "[" in part or part.startswith(("constrained-", "function-")))


_TYPE_WORDS = {
    "string_type": "expected text", "int_type": "expected a whole number",
    "float_type": "expected a number", "bool_type": "expected true or false",
    "model_type": "expected a mapping of fields", "dict_type": "expected a mapping",
    "list_type": "expected a list", "int_parsing": "expected a whole number",
    "float_parsing": "expected a number", "bool_parsing": "expected true or false",
    "int_from_float": "expected a whole number", "finite_number": "expected a finite number",
}
_BOUND_WORDS = {"greater_than": "more than", "greater_than_equal": "at least",
                "less_than": "less than", "less_than_equal": "at most"}


def _message(error: Any, path: FieldPath, located: Located) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        known = _known_fields(path[:-1])
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        if close:
            return f"unknown key '{key}'; did you mean '{close[0]}'?"
        return f"unknown key '{key}'; expected one of: {', '.join(known)}" if known else f"unknown key '{key}'"
    if kind == "missing":
        return f"missing required field '{path[-1]}'" if path else "missing required field"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        got = error.get("input")
        choices = [c.strip().strip("'") for c in str(expected).replace(" or ", ", ").split(",")]
        close = difflib.get_close_matches(str(got), choices, n=1, cutoff=0.6) if isinstance(got, str) else []
        hint = f"; did you mean '{close[0]}'?" if close and close[0] != got else ""
        return f"'{shown(got)}' is not allowed; expected {expected}{hint}"
    if kind in _TYPE_WORDS:
        return f"{_TYPE_WORDS[kind]}, got {spelled(error.get('input'))}"
    if kind in _BOUND_WORDS:
        bound = next(iter(error.get("ctx", {}).values()), "?")
        return f"must be {_BOUND_WORDS[kind]} {bound}, got {spelled(error.get('input'))}"
    if kind in ("string_too_short", "string_too_long"):
        got, ctx = error.get("input"), error.get("ctx", {})
        if kind == "string_too_short" and ctx.get("min_length") == 1:
            return "must not be empty"
        limit = ctx.get("min_length", ctx.get("max_length"))
        side = "at least" if kind == "string_too_short" else "at most"
        return f"is {len(got) if isinstance(got, str) else '?'} characters long; {side} {limit}"
    message = str(error.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message[:1].lower() + message[1:] if message else "invalid value"


def _known_fields(path: FieldPath) -> list[str]:
    """The field names of the model that sits at `path`, for "did you mean"."""
    annotation: Any = Storyboard
    if len(path) >= 2 and path[0] == "engines" and isinstance(path[1], str):
        annotation = _engine_settings_model(path[1])  # each engine's block has its own model
        path = path[2:]
    for part in path:
        model = _pick_model(annotation)
        if _is_model(model):
            field = model.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return []
            annotation = field.annotation
        elif typing.get_origin(model) is list and isinstance(part, int):
            annotation = typing.get_args(model)[0]
        elif typing.get_origin(model) is dict:
            annotation = typing.get_args(model)[1]
        else:
            return []
    model = _pick_model(annotation)
    return list(model.model_fields) if _is_model(model) else []


def _engine_settings_model(name: str) -> Any:
    from ..engines import settings_model
    from ..errors import ConfigError

    if name == "draft":
        return DraftSettings
    try:
        return settings_model(name)
    except ConfigError:
        return None


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _pick_model(annotation: Any) -> Any:
    """A model class, a list/dict annotation, or None, from a (possibly union) type."""
    if _is_model(annotation) or typing.get_origin(annotation) in (list, dict):
        return annotation
    for arg in typing.get_args(annotation):
        picked = _pick_model(arg)
        if picked is not None:
            return picked
    return None


# --- cross-field checks ---------------------------------------------------------------

def check_storyboard(loaded: LoadedStoryboard, *, check_files: bool = True) -> list[Issue]:
    """Every check that needs more than one field: ids, engines, timing, files."""
    sb = loaded.storyboard
    at = loaded.located.issue
    issues: list[Issue] = []
    seen: dict[str, int] = {}
    for index, shot in enumerate(sb.shots):
        if shot.id in seen:
            issues.append(at(("shots", index, "id"),
                             f"duplicate shot id '{shot.id}' (also shots[{seen[shot.id]}])"))
        else:
            seen[shot.id] = index
    issues += _check_engines(loaded)
    issues += _check_timing(loaded)
    issues += _check_continuity(loaded)
    from .cast import check_cast

    issues += check_cast(loaded)
    for index, variant in enumerate(sb.variants):
        for shot_id in variant.shots:
            if shot_id not in seen:
                close = difflib.get_close_matches(shot_id, list(seen), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                issues.append(at(("variants", index, "shots", shot_id), f"no shot has id '{shot_id}'{hint}"))
    from ..scoring import SCORERS

    for name in sb.scoring.weights:
        if name not in SCORERS:
            close = difflib.get_close_matches(name, list(SCORERS), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"scorers: {', '.join(SCORERS)}"
            issues.append(at(("scoring", "weights", name), f"unknown scorer '{name}'; {hint}"))
    names = [v.name for v in sb.variants]
    for index, name in enumerate(names):
        if names.index(name) != index:
            issues.append(at(("variants", index, "name"), f"duplicate variant name '{name}'"))
    if check_files:
        # On a resolved copy when `loaded` is not: checks never fill anything in.
        keys = {key for key, _, _ in _source_fields(sb)}
        resolved = loaded if keys <= loaded.sources.keys() else resolve_sources(loaded)
        issues += _check_files(resolved)
        from ..outputs import check_outputs

        issues += check_outputs(resolved)
    return issues


def shot_engine(sb: Storyboard, shot: Shot, *, quality: str = "final") -> str:
    """The engine that makes a shot's takes."""
    from ..engines import KIND_ENGINES

    if shot.kind == "prompt" or (shot.engine and shot.kind == "image"):
        if quality == "draft" and shot.kind == "prompt":
            return sb.draft_engine
        return shot.engine or sb.defaults.engine
    return shot.engine or KIND_ENGINES[shot.kind]


def shot_fallbacks(sb: Storyboard, shot: Shot, *, quality: str = "final") -> list[str]:
    """The engines a shot falls back to, in order: its own ``fallback:``, else its
    engine's settings' ``fallback:``."""
    if shot.fallback:
        return list(shot.fallback)
    settings = sb.engine_settings(shot_engine(sb, shot, quality=quality))
    return list(getattr(settings, "fallback", None) or [])


def with_engine(loaded: LoadedStoryboard, shot_id: str, engine: str) -> LoadedStoryboard:
    """The storyboard with one shot's engine replaced (a fallback)."""
    sb = loaded.storyboard
    shots = [s.model_copy(update={"engine": engine}) if s.id == shot_id else s for s in sb.shots]
    return LoadedStoryboard(loaded.path, sb.model_copy(update={"shots": shots}), loaded.located,
                            loaded.sources)


def _check_engines(loaded: LoadedStoryboard) -> list[Issue]:
    """Engine names, and what each shot asks of its engine. (Each ``engines.<name>:``
    block is checked against its engine's settings model while parsing.)"""
    from ..engines import engine_class, has_engine, unknown_engine
    from ..errors import ConfigError

    sb = loaded.storyboard
    at = loaded.located.issue
    issues: list[Issue] = []

    def unknown(name: str, path: FieldPath) -> Issue:
        return at(path, unknown_engine(name))

    needs_default = any(s.kind == "prompt" and not s.engine for s in sb.shots)
    if needs_default and not has_engine(sb.defaults.engine):
        issues.append(unknown(sb.defaults.engine, ("defaults", "engine")))
    draft = sb.engines.get("draft")
    if isinstance(draft, DraftSettings) and draft.engine and not has_engine(draft.engine):
        issues.append(unknown(draft.engine, ("engines", "draft", "engine")))
    for index, shot in enumerate(sb.shots):
        name = shot_engine(sb, shot)
        if not has_engine(name):
            if shot.engine:
                issues.append(unknown(name, ("shots", index, "engine")))
            continue
        path = ("shots", index, "engine") if shot.engine else ("shots", index, shot.kind)
        try:
            caps = engine_class(name).capabilities_for(loaded.engine_settings(name))
        except ConfigError as exc:  # a plug-in that cannot be loaded
            issues.append(at(path, str(exc)))
            continue
        if shot.kind not in caps.kinds:
            issues.append(at(path, f"engine '{name}' cannot make {_article(shot.kind)} shot "
                                   f"(it makes: {', '.join(sorted(caps.kinds))})"))
            continue
        if shot.continuity == "chain" and not caps.image_to_video:
            issues.append(at(("shots", index, "continuity"),
                             f"engine '{name}' cannot start from the previous shot's frames (no image-to-video)"))
        if shot.continuity == "bridge" and not caps.first_last_frame:
            issues.append(at(("shots", index, "continuity"),
                             f"engine '{name}' cannot bridge: it does not take a first and a last frame"))
        if shot.kind == "prompt" and shot.continuity in ("cut", "match") and not caps.text_to_video \
                and not _starts_from_keyframe(loaded, shot):
            issues.append(at(("shots", index, "prompt"),
                             f"engine '{name}' needs a starting image: give `image:`, `keyframe:` "
                             "or `continuity: chain`"))
        for position, fallback in enumerate(shot.fallback):
            where = ("shots", index, "fallback", position)
            if not has_engine(fallback):
                issues.append(unknown(fallback, where))
                continue
            try:
                fcaps = engine_class(fallback).capabilities_for(loaded.engine_settings(fallback))
            except ConfigError as exc:
                issues.append(at(where, str(exc)))
                continue
            if shot.kind not in fcaps.kinds or (shot.continuity == "chain" and not fcaps.image_to_video) \
                    or (shot.continuity == "bridge" and not fcaps.first_last_frame):
                issues.append(at(where, f"fallback engine '{fallback}' cannot make this shot "
                                        f"({shot.kind}, continuity {shot.continuity})"))
    return issues


def _starts_from_keyframe(loaded: LoadedStoryboard, shot: Shot) -> bool:
    """Whether a prompt shot starts from a keyframe (its own, or one carrying its
    references); whether that keyframe can be made is `cast.check_cast`'s to say."""
    from ..errors import ConfigError
    from .cast import PromptError, route_references

    if shot.keyframe is not None:
        return True
    try:
        route = route_references(loaded, shot)
    except PromptError:
        return True  # the prompt is wrong already; `check_cast` says how
    except ConfigError:
        return False
    return route.keyframe is not None or (route.to is None and bool(route.references))


def transition_frames(transition: Transition, fps: Any) -> int:
    return 0 if transition.type == "cut" else seconds_to_frames(transition.duration, fps)


def _check_timing(loaded: LoadedStoryboard) -> list[Issue]:
    sb = loaded.storyboard
    at = loaded.located.issue
    fps = sb.output.frame_rate
    issues: list[Issue] = []
    frames = [seconds_to_frames(s.duration, fps) for s in sb.shots]
    incoming = []
    for index, shot in enumerate(sb.shots):
        transition = shot.transition or sb.defaults.transition
        tpath = ("shots", index, "transition") if shot.transition else ("defaults", "transition")
        if frames[index] < 1:
            issues.append(at(("shots", index, "duration"),
                             f"{shot.duration:g} s is less than one frame at {float(fps):g} fps"))
        t = transition_frames(transition, fps)
        if index == 0:
            if transition.type not in FIRST_SHOT_TRANSITIONS:
                if shot.transition:
                    issues.append(at(tpath, f"the first shot has no previous shot to {transition.type} "
                                            "from; use 'fade' (in from black) or 'cut'"))
                t = 0
            # a fade in on the first shot overlaps nothing
            if transition.type == "fade" and t > frames[0]:
                issues.append(at(tpath, f"the fade in ({t} frames) is longer than the shot ({frames[0]} frames)"))
            incoming.append(0)
            continue
        if transition.type != "cut" and t == 0:
            issues.append(at(tpath, f"a {transition.duration:g} s {transition.type} rounds to 0 frames "
                                    f"at {float(fps):g} fps"))
        for neighbour, label in ((index - 1, "previous"), (index, "this")):
            if t > frames[neighbour]:
                issues.append(at(tpath, f"the {transition.type} lasts {t} frames ({transition.duration:g} s) "
                                        f"but the {label} shot '{sb.shots[neighbour].id}' has only "
                                        f"{frames[neighbour]}"))
                break
        incoming.append(t)
    for index in range(len(sb.shots)):
        outgoing = incoming[index + 1] if index + 1 < len(sb.shots) else 0
        if incoming[index] + outgoing > frames[index] and incoming[index] <= frames[index] \
                and outgoing <= frames[index]:
            issues.append(at(("shots", index, "duration"),
                             f"shot '{sb.shots[index].id}' is {frames[index]} frames but its transitions in "
                             f"({incoming[index]}) and out ({outgoing}) overlap inside it; lengthen the "
                             "shot or shorten a transition"))
    if sb.ending and sb.ending.type == "fade":
        end = seconds_to_frames(sb.ending.duration, fps)
        room = frames[-1] - incoming[-1]
        if end > room:
            issues.append(at(("ending", "duration"),
                             f"the ending fade ({end} frames) is longer than the last shot's "
                             f"{room} frames after its transition"))
    return issues


def _check_continuity(loaded: LoadedStoryboard) -> list[Issue]:
    sb = loaded.storyboard
    at = loaded.located.issue
    issues: list[Issue] = []
    shots = sb.shots
    for index, shot in enumerate(shots):
        if shot.continuity in ("chain", "match") and index == 0:
            issues.append(at(("shots", 0, "continuity"),
                             f"the first shot has no previous shot to {shot.continuity} "
                             f"{'from' if shot.continuity == 'chain' else 'with'}; use 'cut'"))
        if shot.continuity == "bridge":
            if index == 0 and len(shots) == 1:
                issues.append(at(("shots", 0, "continuity"), "a bridge needs a neighbouring shot"))
            following = shots[index + 1] if index + 1 < len(shots) else None
            if following is not None and following.continuity in ("chain", "bridge"):
                issues.append(at(("shots", index + 1, "continuity"),
                                 f"shot '{following.id}' cannot {following.continuity} from shot "
                                 f"'{shot.id}', which bridges into it: each would wait for the other"))
            if following is not None and following.continuity == "match":
                # The bridge is chosen for its seam with the take after it; matching that
                # take to the bridge as well would judge one seam from both sides.
                issues.append(at(("shots", index + 1, "continuity"),
                                 f"shot '{following.id}' cannot match shot '{shot.id}', which "
                                 "bridges into it and already ends on its first frame; use 'cut'"))
    return issues


def expand_source(base: Path, value: str, *, exclude: frozenset[Path] = frozenset()) -> list[Path]:
    """The footage files a `source:` names: a file, a folder's videos, or a glob.

    A folder or glob never yields stitchcraft's own files: cuts that a render's manifest
    lists, the resolved paths in `exclude` (the storyboard's own cuts), half-written
    outputs, or anything under a ``.stitchcraft`` folder. A file named outright is
    returned as it is (the output checks refuse it if it is a cut).
    """
    from ..outputs import published_by_renders

    path = resolve_path(base, value)
    if any(ch in value for ch in "*?["):
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
    elif path.is_dir():
        found = sorted(path.iterdir())
    else:
        return [path] if path.is_file() else []
    videos = [p for p in found if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
              and not p.name.startswith(".") and ".stitchcraft" not in p.parts]
    renders = set(exclude)
    for folder in {p.parent for p in videos}:
        renders |= published_by_renders(folder)
    return [p for p in videos if p.resolve() not in renders]


def _check_files(loaded: LoadedStoryboard) -> list[Issue]:
    """Every file the storyboard names exists and reads as its kind (`loaded` has its
    sources resolved)."""
    sb = loaded.storyboard
    at = loaded.located.issue
    issues: list[Issue] = []

    def need(path: FieldPath, value: str | None, kinds: tuple[str, ...], what: str,
             content: Callable[[Path], str | None] | None = None) -> None:
        if value is None:
            return
        resolved = loaded.resolve(value)
        try:
            found = resolved.is_file()
        except OSError as exc:  # e.g. a name too long for the file system
            issues.append(at(path, f"cannot look for {what} '{shown(value)}': {exc.strerror or exc}"))
            return
        if not found:
            issues.append(at(path, f"{what} '{value}' not found (looked at {resolved})"))
        elif resolved.suffix.lower() not in kinds:
            issues.append(at(path, f"'{value}' is not {_article(what)} file "
                                   f"(expected {', '.join(kinds)})"))
        elif content is not None and (problem := content(resolved)):
            issues.append(at(path, f"{what} '{value}' {problem}"))

    for key, path, value in _source_fields(sb):
        if loaded.sources.get(key):
            continue
        try:  # look again, to say why nothing was found
            expand_source(loaded.base_dir, value, exclude=_own_cuts(loaded))
        except OSError as exc:
            issues.append(at(path, f"cannot look for '{shown(value)}': {exc.strerror or exc}"))
            continue
        issues.append(at(path, f"'{value}' matches no video file "
                               f"({', '.join(VIDEO_EXTENSIONS[:4])}, ...)"))

    def shot_files(prefix: FieldPath, shot: Any) -> None:
        need(prefix + ("image",), shot.image_file, IMAGE_EXTENSIONS, "image", image_problem)
        need(prefix + ("reference",), getattr(shot, "reference", None), IMAGE_EXTENSIONS,
             "reference image", image_problem)
        text = shot.text
        if text is not None and not isinstance(text, str):
            need(prefix + ("text", "font"), text.font, FONT_EXTENSIONS, "font", font_problem)
        title = shot.title
        if title is not None and not isinstance(title, str):
            need(prefix + ("title", "font"), title.font, FONT_EXTENSIONS, "font", font_problem)

    for index, shot in enumerate(sb.shots):
        shot_files(("shots", index), shot)
    for vindex, variant in enumerate(sb.variants):
        for shot_id, override in variant.shots.items():
            shot_files(("variants", vindex, "shots", shot_id), override)
        if variant.audio:
            need(("variants", vindex, "audio", "music"), variant.audio.music, AUDIO_EXTENSIONS, "music")
            need(("variants", vindex, "audio", "voiceover"), variant.audio.voiceover, AUDIO_EXTENSIONS,
                 "voice-over")
    for name, member in sb.cast.items():
        for position, image in enumerate(member.images):
            need(("cast", name, "images", position), image, IMAGE_EXTENSIONS, "cast image", image_problem)
    for position, image in enumerate(sb.style.images if sb.style else []):
        need(("style", "images", position), image, IMAGE_EXTENSIONS, "style image", image_problem)
    need(("audio", "music"), sb.audio.music, AUDIO_EXTENSIONS, "music")
    need(("audio", "voiceover"), sb.audio.voiceover, AUDIO_EXTENSIONS, "voice-over")
    need(("subtitles",), sb.subtitles, SUBTITLE_EXTENSIONS, "subtitle", subtitle_problem)
    need(("logo",), sb.logo, IMAGE_EXTENSIONS, "logo", image_problem)
    for name, settings in sb.engines.items():
        if isinstance(settings, EngineSettings):
            for field, problem in settings.file_problems(loaded.resolve).items():
                issues.append(at(("engines", name, field), problem))
    return issues


# --- what is inside the files ---------------------------------------------------------
# Each check reads a file the way the stage that uses it will (Pillow for images and
# fonts; ffmpeg's own rules for subtitle timings) and says what is wrong, or None.

def image_problem(path: Path) -> str | None:
    """Why Pillow cannot read `path` as an image, or None."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as exc:  # Pillow raises many kinds (OSError, SyntaxError, bombs...)
        return f"is not an image Pillow can read ({shown(exc, 120)})"
    return None


def font_problem(path: Path) -> str | None:
    """Why FreeType (Pillow's and ffmpeg's font reader) cannot open `path`, or None."""
    from PIL import ImageFont

    try:
        ImageFont.truetype(str(path), 16)
    except Exception as exc:  # OSError for most damage, ValueError for some
        return f"is not a font FreeType can read ({shown(exc, 120)})"
    return None


MAX_SUBTITLE_BYTES = 16 * 1024 * 1024
# Timestamps as ffmpeg's demuxers read them: SRT 00:00:01,000 (or .000), WebVTT
# 00:01.000 or 00:00:01.000, ASS/SSA 0:00:01.00.
_SRT_TIME = re.compile(r"(\d{1,3}):([0-5]\d):([0-5]\d)[,.](\d{3})")
_VTT_TIME = re.compile(r"(?:(\d{1,3}):)?([0-5]\d):([0-5]\d)\.(\d{3})")
_ASS_TIME = re.compile(r"(\d{1,2}):([0-5]\d):([0-5]\d)\.(\d{2,3})")


def subtitle_problem(path: Path) -> str | None:
    """Why `path` is not a usable subtitle file, or None.

    It must be UTF-8 (or UTF-16 with a byte-order mark) text holding at least one cue or
    event with valid times; the first malformed timing line is named.
    """
    try:
        if path.stat().st_size > MAX_SUBTITLE_BYTES:
            return f"is larger than {MAX_SUBTITLE_BYTES // 2**20} MiB; that is not a subtitle file"
        raw = path.read_bytes()
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    try:
        text = raw.decode("utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return f"line {line}: is not UTF-8 text"
    if "\x00" in text:
        return "is binary, not subtitle text"
    lines = text.splitlines()
    if path.suffix.lower() in (".ass", ".ssa"):
        return _events_problem(lines)
    return _cues_problem(lines, webvtt=path.suffix.lower() == ".vtt")


def _cues_problem(lines: list[str], *, webvtt: bool) -> str | None:
    """SRT and WebVTT: every ``start --> end`` line must read as two times in order."""
    if webvtt and not (lines and lines[0].startswith("WEBVTT")):
        return "line 1: a WebVTT file starts with 'WEBVTT'"
    pattern, example = (_VTT_TIME, "00:00:01.000 --> 00:00:02.500") if webvtt else (
        _SRT_TIME, "00:00:01,000 --> 00:00:02,500")
    cues = 0
    for number, line in enumerate(lines, 1):
        if "-->" not in line:
            continue
        before, _, after = line.partition("-->")
        start = _seconds(pattern, before.strip())
        end = _seconds(pattern, after.split()[0] if after.split() else "")
        if start is None or end is None:
            return f"line {number}: '{shown(line.strip(), 60)}' is not a cue timing like {example}"
        if end < start:
            return f"line {number}: the cue ends before it starts"
        cues += 1
    return None if cues else f"holds no cue (a timing line like {example})"


def _events_problem(lines: list[str]) -> str | None:
    """ASS/SSA: a [Script Info] header, and Dialogue events whose Start and End read as times."""
    first = next((line.strip() for line in lines if line.strip()), "")
    if first.lower() != "[script info]":
        return "line 1: an ASS/SSA file starts with '[Script Info]'"
    # The v4+ event fields, until the [Events] Format line says otherwise.
    fields = ["layer", "start", "end", "style", "name", "marginl", "marginr", "marginv", "effect", "text"]
    events = 0
    section = ""
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line.lower()
        elif section == "[events]" and line.lower().startswith("format:"):
            fields = [f.strip().lower() for f in line[len("format:"):].split(",")]
            if "start" not in fields or "end" not in fields:
                return f"line {number}: the Format line names no Start and End"
        elif section == "[events]" and line.lower().startswith("dialogue:"):
            values = [v.strip() for v in line[len("dialogue:"):].split(",", len(fields) - 1)]
            start, end = (_seconds(_ASS_TIME, values[fields.index(key)])
                          if fields.index(key) < len(values) else None for key in ("start", "end"))
            if start is None or end is None:
                return f"line {number}: the Dialogue has no Start and End times like 0:00:01.00"
            if end < start:
                return f"line {number}: the event ends before it starts"
            events += 1
    return None if events else "holds no Dialogue event in an [Events] section"


def _seconds(pattern: re.Pattern[str], text: str) -> float | None:
    """A timestamp in seconds, or None when `text` is not one."""
    match = pattern.fullmatch(text)
    if match is None:
        return None
    hours, minutes, seconds, fraction = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(fraction) / 10 ** len(fraction)


def _article(what: str) -> str:
    return f"an {what}" if what[:1] in "aeiou" else f"a {what}"
