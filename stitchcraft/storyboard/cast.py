"""Cast, style and keyframes: what keeps characters and look the same across shots.

Three facts live here, each in one function:

- `fill_prompt`: the prompt an engine gets. ``{name}`` becomes cast member `name`'s
  description, ``{{`` and ``}}`` are literal braces, and the style's description is
  appended after a comma: ``"<prompt>, <style description>"`` (the prompt's trailing
  whitespace dropped).
- `shot_references`: a shot's reference images in order of priority.
- `route_references`: where they go. A shot whose first frame is made from its prompt
  sends them to its engine when that takes references, and otherwise to a keyframe (a
  still an image engine makes first, which the shot's engine animates). A shot that
  starts from a given frame (an image file, the previous take) sends only its own
  ``reference:`` to its engine: the frame it starts from already carries the look.

`check_cast` reports every mistake with its place; `stitchcraft.storyboard.load` calls it.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError, Issue
from ..yamlsource import FieldPath, shown
from . import CastMember, ImagePrompt, Shot, Storyboard, Style

if TYPE_CHECKING:
    from ..engines import Capabilities
    from .load import LoadedStoryboard

# ``{{``, ``}}``, ``{anything}`` or a lone brace, leftmost first.
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_ESCAPES = "write {{ or }} for a literal brace"


class PromptError(ValueError):
    """A prompt's placeholder names no cast member, or a brace stands alone."""


# --- prompts --------------------------------------------------------------------------

def _substitute(text: str, cast: Mapping[str, CastMember]) -> tuple[str, list[str]]:
    """`text` with its placeholders replaced, and the cast members it names in order
    of first appearance.

    Raises:
        PromptError: a placeholder names no cast member, is not a name, or a brace
            stands alone.
    """
    out: list[str] = []
    named: list[str] = []
    end = 0
    for match in _TOKEN.finditer(text):
        out.append(text[end:match.start()])
        end = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            out.append(token[0])
        elif token in ("{", "}"):
            raise PromptError(f"a lone '{token}' at character {match.start() + 1}; {_ESCAPES}, "
                              "and {name} for a cast member")
        else:
            name = match.group(1)
            if not _NAME.fullmatch(name):
                raise PromptError(f"'{shown(token)}' is not a placeholder: write a cast member "
                                  f"as {{name}}; {_ESCAPES}")
            if name not in cast:
                raise PromptError(_unknown_member(name, cast, f"'{token}'"))
            out.append(cast[name].description)
            if name not in named:
                named.append(name)
    out.append(text[end:])
    return "".join(out), named


def _unknown_member(name: str, cast: Mapping[str, CastMember], shown_as: str) -> str:
    if not cast:
        return f"{shown_as} names no cast member: the storyboard has no `cast:`; {_ESCAPES}"
    close = difflib.get_close_matches(name, list(cast), n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"the cast: {', '.join(cast)}"
    return f"{shown_as} names no cast member; {hint} ({_ESCAPES})"


def fill_prompt(text: str, cast: Mapping[str, CastMember], style: Style | None) -> str:
    """The prompt an engine gets for `text`: placeholders replaced by the cast's
    descriptions, then ``", <style description>"`` when the style has one.

    Raises:
        PromptError: as `_substitute`.
    """
    filled, _ = _substitute(text, cast)
    if style is not None and style.description:
        filled = f"{filled.rstrip()}, {style.description}"
    return filled


def _shot_prompts(shot: Shot, index: int) -> Iterator[tuple[FieldPath, str]]:
    """(field path, text) of every prompt of a shot that may name the cast."""
    if shot.prompt is not None:
        yield ("shots", index, "prompt"), shot.prompt
    if isinstance(shot.image, ImagePrompt):
        yield ("shots", index, "image", "prompt"), shot.image.prompt
    if isinstance(shot.keyframe, str):
        yield ("shots", index, "keyframe"), shot.keyframe
    elif shot.keyframe is not None and shot.keyframe.prompt is not None:
        yield ("shots", index, "keyframe", "prompt"), shot.keyframe.prompt


def shot_cast(sb: Storyboard, shot: Shot) -> list[str]:
    """The cast members in a shot: its ``cast:`` list, then those its prompts name
    (the shot's prompt, then its still's), by first appearance, each once. A listed
    name the storyboard does not cast is left out (validation reports it).

    Raises:
        PromptError: a prompt names no cast member (caught by validation).
    """
    names = list(dict.fromkeys(name for name in shot.cast if name in sb.cast))
    for _, text in _shot_prompts(shot, 0):
        names += [n for n in _substitute(text, sb.cast)[1] if n not in names]
    return names


# --- reference images -----------------------------------------------------------------

def shot_references(loaded: LoadedStoryboard, shot: Shot) -> list[Path]:
    """A shot's reference images in order of priority, resolved, each once: its own
    ``reference:``; then its cast's images taken in turns (every member's first image
    in cast order, then every second image, ...); then the style's images.

    An engine that takes fewer gets the first ones.
    """
    sb = loaded.storyboard
    members = [sb.cast[name] for name in shot_cast(sb, shot)]
    ordered: list[str] = [shot.reference] if shot.reference else []
    for turn in range(max((len(m.images) for m in members), default=0)):
        ordered += [m.images[turn] for m in members if turn < len(m.images)]
    ordered += sb.style.images if sb.style else []
    return list(dict.fromkeys(loaded.resolve(value) for value in ordered))


def cast_images(loaded: LoadedStoryboard, shot: Shot) -> dict[str, list[Path]]:
    """Cast member -> their images, resolved, for the members in a shot who have any
    (in the shot's cast order). The style's images are not among them."""
    sb = loaded.storyboard
    return {name: [loaded.resolve(p) for p in sb.cast[name].images]
            for name in shot_cast(sb, shot) if sb.cast[name].images}


# --- where the references go ----------------------------------------------------------

@dataclass(frozen=True)
class KeyframeSpec:
    """A still an image engine makes before a shot, which the shot's engine animates.

    Attributes:
        prompt: The final prompt (`fill_prompt` of ``keyframe:``, ``image: {prompt}``,
            or the shot's prompt for an implicit keyframe).
        engine: The image engine (serves kind ``keyframe``).
        candidates: Stills to make.
        origin: ``keyframe`` (the shot's ``keyframe:``), ``image`` (``image: {prompt}``)
            or ``implicit`` (made only to carry the shot's reference images).
        negative_prompt: The shot's negative prompt.
        references: The reference images the image engine gets, at most as many as it
            takes.
    """

    prompt: str
    engine: str
    candidates: int
    origin: Literal["keyframe", "image", "implicit"]
    negative_prompt: str | None = None
    references: tuple[Path, ...] = ()


@dataclass(frozen=True)
class ReferenceRoute:
    """Where a shot's reference images go, and the keyframe it starts from.

    Attributes:
        shot_id: The shot.
        engine: The shot's engine.
        to: ``engine`` (the shot's engine gets them), ``keyframe`` (they condition the
            keyframe), or None (none are sent).
        references: The shot's reference images this route considers, by priority.
        engine_references: Those the shot's engine gets (cut to what it takes).
        limit: Most reference images the receiver takes (0 when none are sent).
        keyframe: The keyframe the shot starts from, or None.
        left_out: Reference images of the shot that no engine gets: past the
            receiver's limit, or a cast's and style's images for a shot that starts
            from a given frame.
        start: How the shot's first frame is given (`given_start`), or None when its
            engine makes it.
        problem: Why the shot cannot be made as written (a validation error), or None.
        where: The field `problem` is about.
    """

    shot_id: str
    engine: str
    to: Literal["engine", "keyframe"] | None = None
    references: tuple[Path, ...] = ()
    engine_references: tuple[Path, ...] = ()
    limit: int = 0
    keyframe: KeyframeSpec | None = None
    left_out: tuple[Path, ...] = ()
    start: str | None = None
    problem: str | None = None
    where: FieldPath = ()

    def checked(self) -> ReferenceRoute:
        """This route, when it has no problem.

        Raises:
            ConfigError: the problem, naming the shot.
        """
        if self.problem:
            raise ConfigError(f"shot '{self.shot_id}': {self.problem}")
        return self


def capabilities(loaded: LoadedStoryboard, name: str) -> Capabilities:
    """What engine `name` can make with the storyboard's settings for it.

    Raises:
        ConfigError: no engine has that name, or its plug-in cannot be loaded.
    """
    from ..engines import engine_class

    return engine_class(name).capabilities_for(loaded.engine_settings(name))


def animates_image(caps: Capabilities) -> bool:
    """Whether an engine can start a shot from a still (a keyframe)."""
    return caps.image_to_video or "image" in caps.kinds


def given_start(shot: Shot) -> str | None:
    """How a shot's first frame is given, in words, or None when its engine makes it
    from the prompt (a prompt shot that cuts or matches, or ``image: {prompt}``)."""
    if shot.continuity == "chain":
        return "starts from the previous take's last frame (continuity: chain)"
    if shot.continuity == "bridge":
        return "is made between its neighbours' takes (continuity: bridge)"
    return {"image": "starts from its image" if shot.image_file else None,
            "source": "is footage", "title": "is a title card", "prompt": None}[shot.kind]


def route_references(loaded: LoadedStoryboard, shot: Shot, *, quality: str = "final") -> ReferenceRoute:
    """Where a shot's reference images go, and the keyframe it starts from (module
    docstring). A problem is returned in the route, never raised.

    Raises:
        ConfigError: the shot's own engine is unknown or cannot be loaded (validation
            reports that on its own).
    """
    from .load import shot_engine

    sb = loaded.storyboard
    index = sb.shots.index(shot)
    engine = shot_engine(sb, shot, quality=quality)
    route = ReferenceRoute(shot.id, engine)
    full = tuple(shot_references(loaded, shot))
    reason = given_start(shot)
    if reason is not None:
        own = full[:1] if shot.reference else ()
        # Footage and title cards are made by no engine that could use the rest.
        unused = full[len(own):] if shot.kind in ("prompt", "image") else ()
        route = _replace(route, references=own, left_out=unused, start=reason)
        if not own:
            return route
        limit = capabilities(loaded, engine).references
        if not limit:
            return _replace(route, where=("shots", index, "reference"), problem=(
                f"engine '{engine}' takes no reference image, and this shot {reason}, so no "
                "keyframe can carry it; give the shot an engine that takes reference images, "
                "or remove `reference:`"))
        return _replace(route, to="engine", engine_references=own, limit=limit)
    route = _replace(route, references=full)
    spec = shot.keyframe_spec
    if spec is None and not full:
        return route
    caps = capabilities(loaded, engine)
    if spec is None and caps.references:
        return _replace(route, to="engine", engine_references=full[:caps.references],
                        limit=caps.references, left_out=full[caps.references:])
    return _keyframe_route(loaded, shot, index, route, caps)


def _keyframe_route(loaded: LoadedStoryboard, shot: Shot, index: int, route: ReferenceRoute,
                    caps: Capabilities) -> ReferenceRoute:
    """The route of a shot made from its prompt that starts from a keyframe: its own
    (``keyframe:``, ``image: {prompt}``) or an implicit one carrying its references."""
    from ..engines import has_engine, unknown_engine

    sb = loaded.storyboard
    spec = shot.keyframe_spec
    origin: Literal["keyframe", "image", "implicit"] = (
        "implicit" if spec is None else "image" if isinstance(shot.image, ImagePrompt) else "keyframe")
    field: FieldPath = ("shots", index, "image" if origin == "image" else "keyframe")
    name = (spec.engine if spec else None) or sb.defaults.keyframe_engine
    named_at = field + ("engine",) if spec and spec.engine else ("defaults", "keyframe_engine")
    refs = route.references
    where_refs = _references_field(shot, index)
    if not animates_image(caps):
        if origin == "keyframe":
            return _replace(route, where=field, problem=(
                f"engine '{route.engine}' cannot animate a keyframe (it starts from no image); "
                "give the shot an engine with image-to-video, or remove `keyframe:`"))
        return _replace(route, where=where_refs, problem=(
            f"{_count(refs)} ({_sources(sb, shot)}) but engine '{route.engine}' takes none and "
            "cannot animate a keyframe that would carry them (it starts from no image); give the "
            "shot an engine that takes reference images, or one with image-to-video so a keyframe "
            f"made by an image engine (defaults.keyframe_engine, now '{name}') can carry them"))
    if not has_engine(name):
        return _replace(route, where=named_at, problem=f"keyframe engine: {unknown_engine(name)}")
    try:
        kcaps = capabilities(loaded, name)
    except ConfigError as exc:
        return _replace(route, where=named_at, problem=str(exc))
    if "keyframe" not in kcaps.kinds:
        return _replace(route, where=named_at, problem=(
            f"engine '{name}' cannot make a keyframe (it makes: {', '.join(sorted(kcaps.kinds))}); "
            "name an image engine"))
    if refs and not kcaps.references:
        kind = "image" if origin == "image" else "keyframe"
        if origin == "implicit":
            problem = (f"{_count(refs)} ({_sources(sb, shot)}) but engine '{route.engine}' takes "
                       f"none, and the keyframe engine '{name}' that would carry them takes none "
                       "either; give the shot an engine that takes reference images, or make its "
                       "keyframe with an image engine that takes them (`keyframe: {engine: ...}` "
                       "on the shot, or defaults.keyframe_engine)")
        else:
            ways = f"`{kind}: {{engine: ...}}`" + (
                "" if spec and spec.engine else ", or defaults.keyframe_engine")
            problem = (f"{_count(refs)} ({_sources(sb, shot)}) to condition its keyframe, but the "
                       f"keyframe engine '{name}' takes none; make the keyframe with an image "
                       f"engine that takes them ({ways})")
            if origin == "keyframe" and caps.references:
                problem += (f", or remove `keyframe:` so they go to '{route.engine}' "
                            f"(takes {caps.references})")
        return _replace(route, where=named_at if spec and spec.engine else where_refs,
                        problem=problem)
    text = (spec.prompt if spec else None) or shot.prompt
    assert text is not None, "a shot made from its prompt has a prompt or an image prompt"
    keyframe = KeyframeSpec(
        prompt=fill_prompt(text, sb.cast, sb.style), engine=name,
        candidates=(spec.candidates if spec else None) or shot.candidates or sb.defaults.candidates,
        origin=origin, negative_prompt=shot.negative_prompt,
        references=refs[:kcaps.references])
    return _replace(route, to="keyframe" if refs else None, keyframe=keyframe,
                    limit=kcaps.references if refs else 0, left_out=refs[kcaps.references:])


def _replace(route: ReferenceRoute, **changes: Any) -> ReferenceRoute:
    return dataclasses.replace(route, **changes)


def _references_field(shot: Shot, index: int) -> FieldPath:
    """The field a shot's reference images are best blamed on."""
    if shot.reference:
        return ("shots", index, "reference")
    if shot.cast:
        return ("shots", index, "cast")
    return ("shots", index, "prompt" if shot.prompt is not None else "image")


def _sources(sb: Storyboard, shot: Shot) -> str:
    """Where a shot's reference images come from, in words."""
    parts = ["its `reference:`"] if shot.reference else []
    members = [n for n in shot_cast(sb, shot) if sb.cast[n].images]
    if members:
        parts.append(f"cast {', '.join(members)}")
    if sb.style and sb.style.images:
        parts.append("the style")
    return ", ".join(parts)


def _count(refs: tuple[Path, ...]) -> str:
    return f"the shot has {len(refs)} reference image{'s' if len(refs) != 1 else ''}"


# --- checks ---------------------------------------------------------------------------

def check_cast(loaded: LoadedStoryboard) -> list[Issue]:
    """Cast names, placeholders, keyframes and reference routes, each problem located."""
    from ..engines import has_engine
    from .load import shot_engine

    sb = loaded.storyboard
    at = loaded.located.issue
    issues: dict[tuple[FieldPath, str], Issue] = {}

    def report(path: FieldPath, message: str) -> None:
        issues.setdefault((path, message), at(path, message))

    for index, shot in enumerate(sb.shots):
        prompts_ok = True
        for path, text in _shot_prompts(shot, index):
            try:
                _substitute(text, sb.cast)
            except PromptError as exc:
                report(path, str(exc))
                prompts_ok = False
        for position, name in enumerate(shot.cast):
            if name not in sb.cast:
                report(("shots", index, "cast", position), _unknown_member(name, sb.cast, f"'{name}'"))
                prompts_ok = False
            elif shot.cast.index(name) != position:
                report(("shots", index, "cast", position), f"'{name}' is listed twice")
        if shot.cast and shot.kind == "title":
            report(("shots", index, "cast"), "a title card shows no one; remove `cast:`")
        if shot.keyframe is not None:
            misplaced = _misplaced_keyframe(shot)
            if misplaced:
                report(("shots", index, "keyframe"), misplaced)
                continue
        if not prompts_ok or not has_engine(shot_engine(sb, shot)):
            continue  # said already; the route would only repeat it
        try:
            if shot.kind not in capabilities(loaded, shot_engine(sb, shot)).kinds:
                continue  # the engine check says so
            route = route_references(loaded, shot)
        except ConfigError:
            continue  # the engine check says why it cannot be loaded
        if route.problem:
            report(route.where, route.problem)
    for vindex, variant in enumerate(sb.variants):
        for shot_id, override in variant.shots.items():
            if override.prompt is not None:
                try:
                    _substitute(override.prompt, sb.cast)
                except PromptError as exc:
                    report(("variants", vindex, "shots", shot_id, "prompt"), str(exc))
    return list(issues.values())


def _misplaced_keyframe(shot: Shot) -> str | None:
    """Why `keyframe:` means nothing on this shot, or None."""
    if shot.continuity in ("chain", "bridge"):
        done = "chained" if shot.continuity == "chain" else "bridged"
        return (f"a {done} shot takes no keyframe: its first frame is the previous "
                f"take's last (continuity: {shot.continuity}); remove `keyframe:`, or use "
                "`continuity: cut` or `match` to start from a keyframe")
    if shot.kind == "image":
        return ("an image shot starts from its image; remove `keyframe:` (to generate the "
                "image, write `image: {prompt: ...}`)")
    if shot.kind in ("source", "title"):
        what = "footage shot" if shot.kind == "source" else "title card"
        return f"a {what} has no frames to generate; `keyframe:` is for prompt shots"
    return None


# --- in words -------------------------------------------------------------------------

def describe_route(route: ReferenceRoute) -> str | None:
    """One line on where a shot's reference images go and what it starts from, for
    `stitch validate`; None for a shot with neither references nor a keyframe."""
    head = f"shot {route.shot_id}:"
    sent = len(route.references) - len(route.left_out)
    keyframe = route.keyframe
    if route.to == "engine":
        return f"{head} {_images(sent, len(route.references), 'goes', 'go')} to {route.engine} (takes {route.limit})"
    if keyframe is not None:
        source = {"keyframe": "", "image": " (its image)", "implicit": " (implicit)"}[keyframe.origin]
        line = f"{head} keyframe{source} by {keyframe.engine}"
        if route.to == "keyframe":
            line += (f"; {_images(sent, len(route.references), 'conditions', 'condition')} the "
                     f"keyframe ({keyframe.engine} takes {route.limit})")
        return f"{line}; {route.engine} animates it"
    if route.left_out and route.start:
        unsent = len(route.left_out)
        return (f"{head} {unsent} cast or style image{'s are' if unsent != 1 else ' is'} not "
                f"sent: the shot {route.start}")
    return None


def _images(sent: int, of: int, one: str, many: str) -> str:
    """``2 reference images go``, ``3 of 5 reference images go``."""
    count = f"{sent} of {of}" if sent < of else str(sent)
    return f"{count} reference image{'s' if of != 1 else ''} {one if of == 1 else many}"


def describe_routes(loaded: LoadedStoryboard) -> list[str]:
    """`describe_route` for every shot that has something to say."""
    lines = []
    for shot in loaded.storyboard.shots:
        line = describe_route(route_references(loaded, shot).checked())
        if line:
            lines.append(line)
    return lines
