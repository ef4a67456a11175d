"""Variant matrices: ``matrix:`` axes expanded into named variants when a storyboard loads.

A matrix names axes, each with its values::

    matrix:
      product: [shoe, bag]
      lang:                        # a value may carry fields
        en: {tagline: Made to move}
        de: {tagline: Gemacht zum Laufen}
      aspect: ["16:9", "9:16"]     # quoted: YAML reads 16:9 as a base-60 number

Every combination of values is a variant, named by its values' slugs in axis order
(``shoe-en-16x9``). In the fields a variant may change (the storyboard's ``title``,
``output``, ``audio``, and a shot's ``prompt``, ``source``, ``image`` file, ``title``,
``text`` and ``fit``), ``{matrix.AXIS}`` becomes the axis's value, ``{matrix.AXIS.FIELD}``
one of its fields, and ``{matrix.name}`` the variant's name. ``{{`` and ``}}`` are left
as written (in a prompt they are the cast's literal braces), so ``{{matrix.lang}}`` is
never replaced. A value that is exactly one placeholder takes the value's YAML type.

The expansion is plain data in, plain data out: the first combination becomes the main
storyboard, every other one a `Variant` (output settings, the shots whose fields differ,
the audio when it differs), so the render shares takes exactly as it does for
hand-written variants. Takes are made at the first combination's output size; an axis
named ``aspect`` of ratios reshapes each variant's output (`aspect_size`).

Two facts live here: the placeholder grammar (`fill`) and where placeholders may go
(`_templated`). Every mistake is an `Issue` at the line that holds it.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..errors import Issue, StoryboardError
from ..yamlsource import FieldPath, Located, format_path, shown
from . import ShotOverride

if TYPE_CHECKING:
    from . import Storyboard

MAX_VARIANTS = 256
NAME_FIELD = "name"  # {matrix.name}: the variant's name, so no axis may be called that
# ``{{``, ``}}``, or ``{matrix.<anything but braces>}``, leftmost first.
_TOKEN = re.compile(r"\{\{|\}\}|\{matrix\.([^{}]*)\}")
_BARE = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")
_AXIS = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
_RATIO = re.compile(r"\s*(\d{1,4})\s*:\s*(\d{1,4})\s*")
_SHOT_FIELDS = ("prompt", "source", "image", "title", "text", "fit")
_WHERE = ("the storyboard's title, output and audio, and a shot's prompt, source, image "
          "file, title, text and fit")
_SYNTAX = "write {matrix.AXIS}, {matrix.AXIS.FIELD} or {matrix.name}"


@dataclass(frozen=True)
class AxisValue:
    """One value of an axis: what ``{matrix.AXIS}`` becomes, and its fields."""

    value: str | int | float
    fields: dict[str, str | int | float] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        """The value as part of a variant name: ``16:9`` -> ``16x9``, spaces -> ``_``."""
        text = str(self.value).replace(":", "x")
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


@dataclass(frozen=True)
class Combination:
    """One variant of the matrix: a value of every axis."""

    name: str
    values: dict[str, AxisValue]


class _Unfilled(ValueError):
    """A placeholder that names no axis, field or value."""


# --- placeholders -----------------------------------------------------------------------

def fill(text: str, combination: Combination) -> str | int | float:
    """`text` with its matrix placeholders replaced by `combination`'s values.

    A text that is one placeholder and nothing else gets the value itself, typed as
    the YAML wrote it (``crf: "{matrix.crf}"`` is a number).

    Raises:
        _Unfilled: a placeholder names no axis, or a field the value lacks.
    """
    whole = _TOKEN.fullmatch(text)
    if whole is not None and whole.group(1) is not None:
        return _value(whole.group(1), combination)
    out: list[str] = []
    end = 0
    for match in _TOKEN.finditer(text):
        out.append(text[end:match.start()])
        end = match.end()
        out.append(match.group(0) if match.group(1) is None else str(_value(match.group(1), combination)))
    out.append(text[end:])
    return "".join(out)


def placeholders(text: str) -> list[str]:
    """The matrix placeholders in `text` (what follows ``matrix.``), escapes skipped."""
    return [m.group(1) for m in _TOKEN.finditer(text) if m.group(1) is not None]


def _value(inner: str, combination: Combination) -> str | int | float:
    parts = inner.split(".")
    if parts == [NAME_FIELD]:
        return combination.name
    axis = parts[0]
    if axis not in combination.values or len(parts) > 2:
        if len(parts) > 2 or not _AXIS.fullmatch(axis):
            raise _Unfilled(f"'{{matrix.{shown(inner)}}}' is not a placeholder; {_SYNTAX}")
        close = difflib.get_close_matches(axis, list(combination.values), n=1, cutoff=0.6)
        hint = f"did you mean '{{matrix.{close[0]}}}'?" if close else \
            f"the axes: {', '.join(combination.values)}"
        raise _Unfilled(f"'{{matrix.{shown(inner)}}}' names no matrix axis; {hint}")
    chosen = combination.values[axis]
    if len(parts) == 1:
        return chosen.value
    if parts[1] not in chosen.fields:
        known = ", ".join(chosen.fields) or "none"
        raise _Unfilled(f"'{{matrix.{inner}}}': {axis} '{chosen.value}' has no field '{parts[1]}' "
                        f"(its fields: {known})")
    return chosen.fields[parts[1]]


def _templated(path: FieldPath) -> bool:
    """Whether a matrix placeholder may stand at `path` (one variant may differ there)."""
    if path[:1] in (("title",), ("output",), ("audio",)):
        return True
    if len(path) >= 3 and path[0] == "shots" and path[2] in _SHOT_FIELDS:
        return path[2] != "image" or len(path) == 3  # an image file, not a generated one's prompt
    return False


def _strings(value: Any, path: FieldPath = ()) -> Iterator[tuple[FieldPath, str]]:
    """(path, text) of every string value in a YAML document (keys aside)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _strings(child, path + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _strings(child, path + (index,))


def _filled(value: Any, combination: Combination, path: FieldPath = ()) -> Any:
    """A copy of a YAML document with the placeholders of its templated fields filled."""
    if isinstance(value, str):
        return fill(value, combination) if _templated(path) else value
    if isinstance(value, dict):
        return {key: _filled(child, combination, path + (key,)) for key, child in value.items()
                if path or key != "matrix"}
    if isinstance(value, list):
        return [_filled(child, combination, path + (index,)) for index, child in enumerate(value)]
    return value


# --- the axes ---------------------------------------------------------------------------

def _axes(raw: Any, located: Located) -> tuple[dict[str, list[AxisValue]], list[Issue]]:
    """The axes a ``matrix:`` mapping names, each with its values, and what is wrong."""
    at = located.issue
    if not isinstance(raw, dict) or not raw:
        return {}, [at(("matrix",), "a matrix maps each axis to its values, e.g. "
                                    "`matrix: {lang: [en, de]}`")]
    axes: dict[str, list[AxisValue]] = {}
    issues: list[Issue] = []
    for axis, spec in raw.items():
        where: FieldPath = ("matrix", axis)
        if axis == NAME_FIELD:
            issues.append(at(where, "'name' is reserved ({matrix.name} is the variant's name); "
                                    "call the axis something else"))
            continue
        if not _AXIS.fullmatch(axis):
            issues.append(at(where, f"'{shown(axis)}' is not an axis name: use letters, digits and _, "
                                    "starting with a letter"))
            continue
        items = list(spec.items()) if isinstance(spec, dict) else \
            [(value, None) for value in spec] if isinstance(spec, list) else None
        if items is None:
            issues.append(at(where, "expected a list of values, or a mapping of values to their fields"))
            continue
        if not items:
            issues.append(at(where, "the axis has no values"))
            continue
        values: list[AxisValue] = []
        for index, (value, fields) in enumerate(items):
            spot = where + ((value,) if isinstance(spec, dict) else (index,))
            problem = _value_problem(axis, value, fields)
            clash = next((v for v in values if v.slug == AxisValue(value).slug), None) if not problem else None
            if clash is not None:
                problem = (f"'{shown(value)}' and '{shown(clash.value)}' both name variants "
                           f"'{clash.slug}'; make them differ in letters or digits")
            if problem:
                issues.append(at(spot, problem))
            else:
                values.append(AxisValue(value, dict(fields or {})))
        axes[axis] = values
    return axes, issues


def _value_problem(axis: str, value: Any, fields: Any) -> str | None:
    if axis == "aspect" and not (isinstance(value, str) and _RATIO.fullmatch(value)):
        sexagesimal = " (quote it: YAML reads 16:9 unquoted as a base-60 number)" \
            if isinstance(value, int) else ""
        return f"an aspect is a ratio like \"16:9\", got {shown(value)}{sexagesimal}"
    if isinstance(value, bool) or not isinstance(value, str | int | float) or not str(value).strip():
        return f"an axis value is a word or a number, got {shown(value)}"
    if fields is not None and not (isinstance(fields, dict) and all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in fields.values())):
        return "a value's fields are a mapping of names to words or numbers"
    if isinstance(fields, dict) and NAME_FIELD in fields:
        return "'name' is not a field a value can carry"
    return None


def combinations(axes: dict[str, list[AxisValue]]) -> list[Combination]:
    """Every combination of one value per axis, first values first, named by slugs."""
    return [Combination("-".join(v.slug for v in values), dict(zip(axes, values, strict=True)))
            for values in itertools.product(*axes.values())]


def aspect_size(size: tuple[int, int], ratio: str) -> tuple[int, int]:
    """`size` reshaped to `ratio` (``"9:16"``) keeping its shorter side, both even.

    1280x720 at 9:16 is 720x1280; at 1:1, 720x720; at 4:5, 720x900.
    """
    match = _RATIO.fullmatch(ratio)
    assert match is not None, "checked with the axis"
    across, down = int(match.group(1)), int(match.group(2))
    short = min(size)

    def even(side: float) -> int:
        return max(16, int(side / 2 + 0.5) * 2)

    if across >= down:
        return even(short * across / down), short
    return short, even(short * down / across)


# --- the expansion ----------------------------------------------------------------------

@dataclass
class MatrixLocated(Located):
    """The storyboard's positions, for a storyboard expanded from a matrix: a problem
    found later in an expanded variant (``variants[3].shots.logo.title``) is reported
    at the template that made it (``shots[4].title``), naming the variant."""

    variant_names: tuple[str, ...] = ()
    shot_index: dict[str, int] = field(default_factory=dict)

    def issue(self, path: FieldPath, message: str) -> Issue:
        if len(path) >= 2 and path[0] == "variants" and isinstance(path[1], int) \
                and path[1] < len(self.variant_names):
            name = self.variant_names[path[1]]
            rest = path[2:]
            if rest[:1] == ("shots",) and len(rest) >= 2 and rest[1] in self.shot_index:
                rest = ("shots", self.shot_index[str(rest[1])], *rest[2:])
            elif rest[:1] not in (("output",), ("audio",)):
                rest = ("matrix",)
            return super().issue(rest, f"in variant '{name}': {message}")
        return super().issue(path, message)


def expand_matrix(located: Located,
                  issues_of: Callable[[ValidationError, Located], list[Issue]]) -> tuple[Any, Located]:
    """The storyboard document a matrix expands to, and the positions to report with.

    A document without ``matrix:`` comes back as it is (after checking that it uses no
    matrix placeholder).

    Args:
        located: The parsed YAML, a mapping.
        issues_of: Turns a pydantic error on a document shaped like `located` into
            located issues (the loader's own translation).

    Raises:
        StoryboardError: every problem: the axes, a placeholder that names nothing or
            stands where a variant may not differ, an expanded variant that does not
            validate, two variants on one output file.
    """

    document = located.value
    if "matrix" not in document:
        stray = [located.issue(path, f"'{{matrix.{shown(inner)}}}' but the storyboard has no `matrix:`")
                 for path, text in _strings(document) for inner in placeholders(text)[:1]]
        if stray:
            raise StoryboardError(stray)
        return document, located
    axes, issues = _axes(document["matrix"], located)
    if "variants" in document:
        issues.append(located.issue(("variants",), "a storyboard has `matrix:` or `variants:`, not both"))
    count = 1
    for values in axes.values():
        count *= max(1, len(values))
    if count > MAX_VARIANTS:
        issues.append(located.issue(("matrix",), f"the matrix makes {count} variants; at most {MAX_VARIANTS}"))
    if issues:
        raise StoryboardError(issues)
    variants = combinations(axes)
    issues += _name_clashes(variants, located)
    issues += _placeholder_issues(document, variants, located)
    if issues:
        raise StoryboardError(issues)
    filled = [_with_output(document, _filled(document, c, ()), c, axes) for c in variants]
    issues += _validation_issues(filled, variants, located, issues_of)
    issues += _path_clashes(filled, variants, located)
    if issues:
        raise StoryboardError(issues)
    main = filled[0]
    expanded = {**main, "matrix": document["matrix"],
                "variants": [_variant(main, other, c.name) for other, c in zip(filled[1:], variants[1:],
                                                                            strict=True)]}
    shot_ids = [s.get("id") for s in main.get("shots", [])]
    return expanded, MatrixLocated(located.file, located.value, located.positions,
                                   variant_names=tuple(c.name for c in variants[1:]),
                                   shot_index={str(s): i for i, s in enumerate(shot_ids)})


def _name_clashes(variants: list[Combination], located: Located) -> list[Issue]:
    from . import Variant

    issues: list[Issue] = []
    seen: dict[str, Combination] = {}
    pattern = Variant.model_fields["name"].metadata[0].pattern
    for combination in variants:
        if not re.fullmatch(pattern, combination.name):
            issues.append(located.issue(("matrix",), f"'{shown(combination.name)}' is not a usable variant "
                                                     "name (letters, digits, _ . -; at most 64): shorten "
                                                     "the values"))
        elif combination.name in seen:
            issues.append(located.issue(("matrix",), f"two combinations are both named '{combination.name}' "
                                                     "(values that differ only in punctuation); make them "
                                                     "differ in letters or digits"))
        seen.setdefault(combination.name, combination)
    return issues[:3]


def _placeholder_issues(document: Any, variants: list[Combination], located: Located) -> list[Issue]:
    """Placeholders where a variant may not differ, or that no combination can fill;
    ``{lang}`` for an axis (a likely slip) outside a prompt, where the cast would say so."""
    issues: list[Issue] = []
    cast = document.get("cast") if isinstance(document.get("cast"), dict) else {}
    for path, text in _strings(document):
        if path[:1] == ("matrix",):
            continue
        found = placeholders(text)
        if found and not _templated(path):
            issues.append(located.issue(path, f"a matrix placeholder cannot go in {format_path(path)}: "
                                              f"variants may differ only in {_WHERE}"))
            continue
        for combination in variants:
            try:
                fill(text, combination)
            except _Unfilled as exc:
                issues.append(located.issue(path, str(exc)))
                break
        if _templated(path) and path[-1] != "prompt":
            for bare in _BARE.findall(text):
                if bare in variants[0].values and bare not in cast:
                    issues.append(located.issue(path, f"'{{{bare}}}' is not replaced; did you mean "
                                                      f"'{{matrix.{bare}}}'?"))
    return issues


def _with_output(document: Any, filled: Any, combination: Combination,
                 axes: dict[str, list[AxisValue]]) -> Any:
    """A filled document with its variant's output path and size: the path without a
    placeholder gets ``-{matrix.name}`` after its stem; an ``aspect`` axis reshapes
    the size unless the size names a placeholder itself."""
    from . import Output, parse_size

    raw = document.get("output", {})
    if not isinstance(raw, dict) or not isinstance(filled.get("output", {}), dict):
        return filled  # validation says what an output is
    output = dict(filled.get("output", {}))
    path = raw.get("path", Output.model_fields["path"].default)
    if isinstance(path, str) and not placeholders(path):
        pure = PurePosixPath(path)
        output["path"] = str(pure.with_name(f"{pure.stem}-{combination.name}{pure.suffix}"))
    size = raw.get("size", Output.model_fields["size"].default)
    if "aspect" in axes and not (isinstance(size, str) and placeholders(size)):
        try:
            width, height = aspect_size(parse_size(size), str(combination.values["aspect"].value))
        except ValueError:
            return {**filled, "output": output}  # the size is wrong as written; validation says so
        output["size"] = f"{width}x{height}"
    return {**filled, "output": output}


def _validation_issues(filled: list[Any], variants: list[Combination], located: Located,
                       issues_of: Callable[[ValidationError, Located], list[Issue]]) -> list[Issue]:
    """Each combination validated as a storyboard of its own; a problem every variant
    has is said once, one that only some have names the first of them. Each variant's
    prompts are filled with the cast, and its frame rate must be the main one's."""
    from . import Storyboard
    from .cast import PromptError, fill_prompt

    found: dict[tuple[str, str], list[Issue]] = {}
    rates = set()
    for document, combination in zip(filled, variants, strict=True):
        mine: list[Issue] = []
        try:
            storyboard = Storyboard.model_validate(document)
        except ValidationError as exc:
            mine = issues_of(exc, located)
        else:
            rates.add(storyboard.output.frame_rate)
            for index, shot in enumerate(storyboard.shots):
                try:
                    if shot.prompt is not None:
                        fill_prompt(shot.prompt, storyboard.cast, storyboard.style)
                except PromptError as exc:
                    mine.append(located.issue(("shots", index, "prompt"), str(exc)))
        for issue in mine:
            found.setdefault((issue.field, issue.message), []).append(
                dataclasses.replace(issue, message=f"in variant '{combination.name}': {issue.message}"))
    issues = [group[0] if len(group) < len(variants) else
              dataclasses.replace(group[0], message=message)
              for (_, message), group in found.items()]
    if len(rates) > 1:
        issues.append(located.issue(("output", "fps"), "every variant of a matrix renders at one frame "
                                                       "rate; render another storyboard for another"))
    return issues


def _path_clashes(filled: list[Any], variants: list[Combination], located: Located) -> list[Issue]:
    taken: dict[str, str] = {}
    for document, combination in zip(filled, variants, strict=True):
        path = os.path.normpath(str(document.get("output", {}).get("path", "")))
        if path in taken:
            return [located.issue(("output", "path"), f"variants '{taken[path]}' and '{combination.name}' "
                                                      f"would both be written to {path}: name every axis "
                                                      "in the path, or use {matrix.name}")]
        taken[path] = combination.name
    return []


def _variant(main: Any, other: Any, name: str) -> dict[str, Any]:
    """A combination as a `Variant`: its output, the shots whose fields differ from the
    main storyboard's, and its audio when that differs."""
    shots: dict[str, Any] = {}
    for mine, theirs in zip(main.get("shots", []), other.get("shots", []), strict=True):
        changed = {key: theirs[key] for key in _SHOT_FIELDS if key in theirs and theirs[key] != mine.get(key)}
        if any(key in changed for key in ShotOverride.CONTENT):
            # A changed content field replaces them all (`LoadedStoryboard.for_variant`):
            # carry the ones that stay, so an image keeps its motion prompt.
            changed.update({key: theirs[key] for key in ShotOverride.CONTENT if key in theirs})
        if changed:
            shots[theirs["id"]] = changed
    variant: dict[str, Any] = {"name": name, "output": other.get("output", {})}
    if shots:
        variant["shots"] = shots
    if other.get("audio") != main.get("audio"):
        variant["audio"] = other.get("audio", {})
    return variant


def main_name(storyboard: Storyboard) -> str | None:
    """The name of a matrix's first combination, which is the main cut; None without one."""
    if not storyboard.matrix:
        return None
    first = [AxisValue(next(iter(values))) for values in storyboard.matrix.values()]
    return "-".join(value.slug for value in first)
