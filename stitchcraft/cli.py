"""The `stitch` command line: parse options, call the library, map errors to exit codes.

Exit codes: 0 ok, 1 the render failed, 2 invalid input (storyboard, media, options).
Heavy modules are imported inside commands so `stitch --help` and `stitch validate`
stay instant and never import torch.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from collections.abc import Callable
from inspect import cleandoc, signature
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich import box as rich_box
from typer.core import TyperGroup

from .errors import InputError, StitchError, StoryboardError
from .ui import plural


class _Commands(TyperGroup):
    """A command group whose listing shows each command's first paragraph as one line
    of prose: help is read as rich markup, which keeps a docstring's line breaks, so the
    listing broke sentences where the source wraps them."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        for command in self.commands.values():
            if command.short_help is None and command.help:
                command.short_help = " ".join(cleandoc(command.help).split("\n\n")[0].split())
        super().format_help(ctx, formatter)


# Tables for a terminal or a pipe's 80 columns: no rules between the columns, no padding
# at the edges.
_NARROW_TABLE: dict[str, Any] = {"box": rich_box.SIMPLE_HEAD, "show_edge": False, "pad_edge": False,
                                 "padding": (0, 1, 0, 0)}
# The longest note `stitch engines` keeps in its table on a narrow terminal.
_NOTE_IN_TABLE = 48

app = typer.Typer(
    cls=_Commands,
    name="stitch",
    help="Turn a YAML storyboard into a finished multi-shot video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])

StoryboardArg = Annotated[Path, typer.Argument(help="The storyboard YAML file.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable result on stdout.")]
# Help text is read as rich markup: a literal "[" is written "\\[".
ExecutorOpt = Annotated[str, typer.Option(
    help="Where engine calls run: local, or ray (a Ray cluster's GPUs; pip install 'stitchcraft\\[ray]').")]
AddressOpt = Annotated[str | None, typer.Option(
    help="The Ray cluster for --executor ray (host:6379, ray://host:10001 or auto); "
         "default: a local Ray instance.")]
CacheOpt = Annotated[Path | None, typer.Option("--cache", help="Take store folder "
                                               "\\[default: .stitchcraft/cache beside the storyboard].")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Validate, plan and estimate the "
                                          "cost; generate nothing.")]


def _err(message: str) -> None:
    typer.echo(message, err=True)


_CI_FLAG: list[bool] = [False]  # set by `stitch --ci`


def _ci_mode() -> bool:
    """CI mode: `stitch --ci`, or CI=true in the environment (as CI services set it)."""
    return _CI_FLAG[0] or os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@app.callback()
def _global_options(ci: Annotated[bool, typer.Option(
        "--ci", help="CI mode (also when CI=true): no colour or progress bars, logs on stderr, "
                     "a JSON result on stdout.")] = False) -> None:
    """Turn a YAML storyboard into a finished multi-shot video."""
    _CI_FLAG[0] = ci
    if _ci_mode():
        os.environ["NO_COLOR"] = "1"  # rich, and anything else that honours it


def handled(fn: F) -> F:
    """Runs a command, turning stitchcraft's exceptions into messages and exit codes."""

    takes_json = "as_json" in signature(fn).parameters

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if takes_json and _ci_mode():
            kwargs["as_json"] = True
        as_json = bool(kwargs.get("as_json"))
        try:
            return fn(*args, **kwargs)
        except StoryboardError as exc:
            count = len(exc.issues)
            for issue in exc.issues:
                _err(f"error: {issue}")
            _err(f"{count} problem{'s' if count != 1 else ''} found; nothing was rendered.")
            _fail(as_json, 2, exc, [str(i) for i in exc.issues])
        except InputError as exc:
            _err(f"error: {exc}")
            _fail(as_json, 2, exc)
        except StitchError as exc:
            _err(f"render failed: {exc}")
            _fail(as_json, 1, exc)
        except OSError as exc:
            if type(exc).__module__.startswith("av."):
                _internal(exc, as_json)  # PyAV's errors are OSErrors, but no disk's or path's
            # A disk that is full or read-only, a path in the way: one line, no traceback.
            message = _os_error(exc)
            _err(f"error: {message}")
            _fail(as_json, 1, StitchError(message))
        except KeyboardInterrupt:
            _end_children()
            _err("interrupted; finished takes are kept in the cache and will be reused")
            _say_jobs_left()
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:
            _internal(exc, as_json)

    return wrapper  # type: ignore[return-value]


def _internal(exc: Exception, as_json: bool) -> None:
    """An error stitchcraft should have turned into a message of its own: said as a bug,
    with how to get its traceback (raised as it is when STITCHCRAFT_DEBUG is set)."""
    if os.environ.get("STITCHCRAFT_DEBUG"):
        raise exc
    message = f"internal error ({type(exc).__name__}: {exc}); this is a bug in stitchcraft"
    _err(f"error: {message}. Run again with STITCHCRAFT_DEBUG=1 for the traceback and report it.")
    _fail(as_json, 1, StitchError(message))


def _os_error(exc: OSError) -> str:
    """`path: cause` for an OS error, in words a user can act on."""
    from .errors import os_cause

    where = exc.filename if exc.filename is not None else "stitchcraft"
    return f"{where}: {os_cause(exc)}"


def _end_children() -> None:
    """Ends the ffmpeg processes an interrupted command started."""
    from .media import kill_children

    kill_children()


def _say_jobs_left() -> None:
    """Names the remote jobs an interrupted render leaves running, and how to collect them."""
    from .generate.jobs import left_running

    running = left_running()
    if not running:
        return
    by_provider: dict[str, int] = {}
    for entry in running:
        by_provider[entry.get("provider") or "?"] = by_provider.get(entry.get("provider") or "?", 0) + 1
    counts = ", ".join(f"{n} at {p}" for p, n in sorted(by_provider.items()))
    _err(f"{len(running)} hosted job(s) are still running ({counts}); they were not cancelled. "
         "Run the same command again to collect them: they will not be submitted again "
         "(nor paid for twice)")


def _terminate(signum: int, frame: Any) -> None:
    # Ctrl-C, SIGTERM and SIGHUP end a command at once: ffmpeg children are killed here
    # (worker threads would otherwise start more), finished takes stay in the cache.
    from .media import kill_children

    kill_children(refuse_new=True)
    raise KeyboardInterrupt


def _fail(as_json: bool, code: int, exc: Exception, issues: list[str] | None = None) -> None:
    if as_json:
        typer.echo(json.dumps({"ok": False, "exit_code": code, "error": str(exc),
                               "kind": type(exc).__name__, "issues": issues or []}))
    raise typer.Exit(code)


def _load(path: Path):
    from .storyboard.load import load_storyboard

    return load_storyboard(path)


@app.command()
@handled
def validate(storyboard: StoryboardArg, as_json: JsonOpt = False) -> None:
    """Check a storyboard without rendering: exit 0 if valid, 2 with the problems.
    Warnings (text its font cannot draw) are said and leave it valid."""
    from .fonts import undrawable_text
    from .storyboard.cast import describe_routes

    loaded = _load(storyboard)
    sb = loaded.storyboard
    routes = describe_routes(loaded)
    warnings = undrawable_text(loaded)
    if as_json:
        typer.echo(json.dumps({"ok": True, "shots": len(sb.shots), "variants": len(sb.variants),
                               "routes": routes, "warnings": warnings}))
    else:
        cuts = f"; its matrix makes {len(sb.variants) + 1} cuts" if sb.matrix else ""
        typer.echo(f"{storyboard}: ok ({plural(len(sb.shots), 'shot')}, "
                   f"{plural(len(sb.variants), 'variant')}{cuts})")
        for line in routes:
            typer.echo(f"  {line}")
        for warning in warnings:
            _err(f"warning: {warning}")


@app.command()
@handled
def plan(storyboard: StoryboardArg, as_json: JsonOpt = False,
         quality: Annotated[str, typer.Option(help="final or draft.")] = "final",
         beam: Annotated[int | None, typer.Option(min=1, max=16, help="Beam width to cost.")] = None,
         cache: CacheOpt = None) -> None:
    """Show the exact plan: frames, segments, candidates, estimated GPU time and the
    hosted takes' seconds, price and time."""
    from .cost import estimate, previous_render
    from .generate import default_cache, engine_fingerprints, storyboard_digests
    from .outputs import cut_paths
    from .plan import plan_storyboard
    from .store import TakeStore
    from .timeline import timecode

    loaded = _load(storyboard).for_quality(_quality(quality))
    result = plan_storyboard(loaded, quality=_quality(quality), digests=storyboard_digests(loaded),
                             fingerprints=engine_fingerprints(loaded, _quality(quality)), beam=beam)
    root = cache or default_cache(loaded)
    costs = estimate(loaded, result, beam=beam, store=TakeStore(root) if root.is_dir() else None,
                     previous=previous_render(cut_paths(loaded, _quality(quality), variants=[])[0].path))
    if as_json:
        typer.echo(json.dumps({**result.to_json(), "hosted": costs.to_json()}, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # Storyboard text is shown as written, never read as rich markup.
    # No rules between columns, and no hours in the times of a cut under an hour: a pipe's
    # 80 columns hold a shot on one line (with rules, its start read "00:00:…").
    def start(frames: int) -> str:
        return timecode(frames, result.fps)[3 if result.total_frames < result.fps * 3600 else 0:]

    table = Table(title=f"{escape(result.title)}: {result.total_frames} frames at {result.fps} fps "
                        f"({timecode(result.total_frames, result.fps)})", **_NARROW_TABLE)
    # Names, times and counts keep their line; the transitions and segments wrap.
    for column in ("shot", "engine", "start", "frames", "in", "segments", "takes", "hash"):
        table.add_column(column, justify="right" if column in ("start", "frames", "in", "takes") else "left",
                         no_wrap=column not in ("in", "segments"), overflow="fold")
    for shot in result.shots:
        if shot.keyframe is not None:  # the still it animates, made first
            still = shot.keyframe.segments[0]
            table.add_row(escape(f"{shot.id} · keyframe"), shot.keyframe.engine, "", "1", "",
                          f"still {shot.keyframe.width}x{shot.keyframe.height}",
                          str(result.takes[still.key]), still.hash[:8])
        segments = ", ".join(f"{s.frames}/{s.generate}" + ("c" if s.chained else "") for s in shot.segments)
        transition = f"{shot.transition_type} {shot.transition_in or shot.fade_in}" if (
            shot.transition_in or shot.fade_in) else "cut"
        if shot.continuity != "cut":
            transition += f" · {shot.continuity}"
        table.add_row(escape(shot.id), shot.engine, start(shot.start), str(shot.frames),
                      transition, segments, str(sum(result.takes[s.key] for s in shot.segments)),
                      shot.segments[0].hash[:8])
    console = Console()
    console.print(table)
    console.print("segments: frames in the cut/frames generated, c when chained to the take before")
    console.print(f"generation order: {' -> '.join(result.order)}")
    generate = loaded.storyboard.scoring.beam_generate
    if result.beam > 1:
        console.print(f"beam {result.beam}: a chained segment's candidates are made once per partial "
                      f"cut it continues ({'all' if generate is None else f'at most {generate}'}), "
                      "counted in takes")
    if result.gpu_seconds:
        for engine, seconds in result.gpu_seconds.items():
            console.print(f"estimated GPU time for {engine}: {seconds / 60:.1f} min (H100-class)")
    elif not costs.engines:
        console.print("no GPU engine needed: every shot renders on the CPU")
    for line in costs.lines():
        console.print(escape(line))


@app.command()
@handled
def render(
    storyboard: StoryboardArg,
    cache: CacheOpt = None,
    quality: Annotated[str, typer.Option(help="final, or draft for a fast preview.")] = "final",
    variant: Annotated[list[str] | None, typer.Option(help="Render only these variants (repeat).")] = None,
    no_variants: Annotated[bool, typer.Option("--no-variants", help="Render the main cut only.")] = False,
    beam: Annotated[int | None, typer.Option(min=1, max=16, help="Beam width for choosing takes.")] = None,
    reroll: Annotated[int, typer.Option(min=0, max=10, help="Rounds of new candidates for weak seams.")] = 0,
    max_cost: Annotated[float | None, typer.Option(
        "--max-cost", min=0, help="Refuse to start if the hosted takes to make are estimated "
                                  "above this many USD.")] = None,
    resubmit: Annotated[bool, typer.Option(
        "--resubmit", help="Submit again hosted takes whose earlier submission was cut off or "
                           "failed (otherwise never resubmitted, so never paid for twice).")] = False,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Render a storyboard: generate, score and choose takes, assemble the final cut."""
    from .picks import load_picks
    from .render import RenderOptions
    from .render import render as run_render
    from .ui import make_reporter

    loaded = _load(storyboard)
    options = RenderOptions(
        cache=cache, quality=_quality(quality),
        variants=[] if no_variants else (variant or None), beam=beam, reroll=reroll,
        picks=load_picks(loaded.path), max_cost=max_cost, resubmit=resubmit,
        executor=executor, address=address,
    )
    if dry_run:
        from .batch import dry_run as plan_only

        planned = plan_only(loaded, options)
        if as_json:
            typer.echo(json.dumps(planned, indent=2))
        else:
            _say_dry_run(storyboard, planned)
        return
    with make_reporter(json_mode=as_json) as reporter:
        result = run_render(loaded, options, reporter)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    for output in result.outputs:
        label = f" [{output.variant}]" if output.variant else ""
        typer.echo(f"{output.path}{label}: {output.frames} frames, {output.duration:.2f} s, "
                   f"{output.width}x{output.height}")
    typer.echo(f"takes: {result.generated} made, {result.reused} reused from the cache; "
               f"manifest: {result.manifest}" + (f"; report: {result.report}" if result.report else ""))


@app.command()
@handled
def engines(storyboard: Annotated[Path | None, typer.Argument(
        help="Check engines with this storyboard's engine settings.", show_default=False)] = None,
            as_json: JsonOpt = False) -> None:
    """List engines and whether each can run here (and why not): what each makes with
    these settings, and for hosted engines their durations (or, for image engines, the
    price of one still), price and key."""
    from .engines import engine_class, engine_names, engine_origin, engine_problems
    from .engines.hosted.base import HostedEngine
    from .engines.hosted.images import ImageEngine
    from .errors import ConfigError

    loaded = _load(storyboard) if storyboard else None
    rows = []
    for name in engine_names():
        try:
            cls = engine_class(name)
        except ConfigError as exc:  # a plug-in that cannot be loaded: the rest still list
            rows.append({"name": name, "available": False, "reason": str(exc), "kinds": [], "can": [],
                         "frame_rule": "", "max_frames": None, "references": 0, "gpu": False,
                         "description": "", "origin": engine_origin(name)})
            continue
        settings = loaded.engine_settings(name) if loaded else None
        available = cls.availability(settings)
        caps = cls.capabilities_for(settings)
        can = [k for k, on in (("text-to-video", caps.text_to_video), ("image-to-video", caps.image_to_video),
                               ("first+last frame", caps.first_last_frame)) if on]
        row = {"name": name, "available": available.ok, "reason": available.reason,
               "kinds": sorted(caps.kinds), "can": can, "frame_rule": str(caps.frame_rule),
               "max_frames": caps.max_frames, "references": caps.references, "gpu": caps.needs_gpu,
               "description": cls.DESCRIPTION, "origin": engine_origin(name)}
        if issubclass(cls, HostedEngine):
            model = cls.model_for(settings)
            row.update(model=model, key_vars=list(cls.KEY_VARS),
                       key_set=all(os.environ.get(v, "").strip() for v in cls.KEY_VARS))
            if issubclass(cls, ImageEngine):  # per still; where the size sets it, priced unsized
                row.update(price_per_image=cls.bill(settings, 0).usd)
            else:
                row.update(durations=list(cls.durations(model)),
                           price_per_second=cls.price_per_second(settings))
        rows.append(row)
    for problem in engine_problems():
        _err(f"warning: {problem}")
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    # On a wide terminal the notes take the most room; at 80 columns every column needs
    # all it can get, and rich gives it by content.
    wide = console.width >= 100
    table = Table(title="stitchcraft engines", expand=wide, **_NARROW_TABLE)
    footnotes: list[str] = []
    for column in ("engine", "runs here", "makes", "frames", "why not / notes"):
        table.add_column(column, overflow="fold", no_wrap=column in ("engine", "runs here"),
                         ratio={"makes": 2, "frames": 2, "why not / notes": 5}.get(column) if wide else None)
    for row in rows:
        makes = ", ".join(row["can"]) or ", ".join(row["kinds"])
        if row["references"]:
            makes += f" (up to {row['references']} reference images)"
        if "price_per_image" in row:  # a hosted image engine: one still per take
            frames = f"${row['price_per_image']:g}/image ({row['model']})"
        elif row["kinds"] == ["keyframe"]:  # a local image engine
            frames = "one still"
        elif "durations" in row:  # hosted: what the model makes and costs, not frames
            durations = row["durations"]
            spans = "/".join(f"{d:g}" for d in durations) if len(durations) <= 6 else \
                f"{durations[0]:g}-{durations[-1]:g}"
            frames = f"{spans} s, ${row['price_per_second']:g}/s ({row['model']})"
        else:
            frames = row["frame_rule"] + (f", max {row['max_frames']}" if row["max_frames"] else "")
        notes = row["reason"] or row["description"]
        if row.get("key_set"):
            notes = f"{notes} ({' and '.join(row['key_vars'])} set)"
        if row["origin"] not in ("built-in", "registered in this process"):
            notes = f"{notes} ({row['origin']})"
        if not wide and not row["available"] and len(notes) > _NOTE_IN_TABLE:
            # A long reason (how to get weights, a key) would fold into a column a dozen
            # characters wide: its first clause stays, the whole of it goes under the table.
            footnotes.append(f"[{len(footnotes) + 1}] {row['name']}: {notes}")
            notes = f"{_clipped(notes.split('; ')[0], _NOTE_IN_TABLE - 6)} [{len(footnotes)}]"
        table.add_row(row["name"], "[green]yes[/]" if row["available"] else "[red]no[/]", makes,
                      frames, escape(notes))
    console.print(table)
    for note in footnotes:
        console.print(escape(note), highlight=False)


def _packed(parts: list[str], width: int) -> str:
    """`parts` joined by spaces into lines of at most `width` characters (a part longer
    than that on a line of its own)."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 1 + len(part) <= width:
            lines[-1] += " " + part
        else:
            lines.append(part)
    return "\n".join(lines)


def _clipped(text: str, most: int) -> str:
    """`text`, cut at a word to at most `most` characters (an ellipsis saying so)."""
    if len(text) <= most:
        return text
    head = text[:most]  # ends at a space when the word before it fits, ellipsis included
    return (head.rsplit(" ", 1)[0].rstrip(" ,;:") if " " in head else head[:most - 1]) + "…"


@app.command()
@handled
def init(path: Annotated[Path, typer.Argument(help="Where to write the starter storyboard.")] = Path("storyboard.yaml"),
         force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False) -> None:
    """Write a starter storyboard to edit."""
    from .starter import engine_advice, starter

    if path.exists() and not force:
        raise InputError(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(starter())
    typer.echo(f"wrote {path}; next: stitch validate {path} && stitch plan {path}")
    advice = engine_advice()
    if advice:
        _err(f"note: {advice}")


@app.command()
@handled
def takes(storyboard: StoryboardArg, as_json: JsonOpt = False,
          variant: Annotated[str | None, typer.Option(help="Show a variant's cut.")] = None) -> None:
    """List a render's candidate takes, their scores, and the chosen ones."""
    import dataclasses

    from .picks import read_manifest

    cut = read_manifest(_load(storyboard)).cut(variant)
    if as_json:
        typer.echo(json.dumps({k: dataclasses.asdict(v) for k, v in cut.shots.items()}, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"takes of {escape(cut.output)}", **_NARROW_TABLE)
    rows = []
    for shot_id, shot in cut.shots.items():
        for segment in shot.segments:
            for index, cand in enumerate(segment.candidates):
                chosen = cand.id == segment.chosen
                pinned = chosen and bool(segment.set_aside)  # the others were made, and set aside
                rows.append(([shot_id, str(segment.index), str(index), ("* " if chosen else "  ") + cand.id[:8],
                              cand.engine, str(cand.seed), f"{cand.score:.3f}" if cand.scored else "-"],
                             chosen, [f"{k}={v:.2f}" for k, v in sorted(cand.components.items())],
                             cand.label + (" (pinned)" if pinned else "")))
    fixed = ("shot", "seg", "#", "take", "engine", "seed", "score")
    widths = [max([len(name), *(len(cells[i]) for cells, *_ in rows)]) for i, name in enumerate(fixed)]
    # Components are packed into lines here, a part never split, and the label wraps in
    # what is left. (Left to rich, a components column narrowed below its widest part
    # came back to it after the label was laid out, and the label lost its last letters.)
    console = Console()
    room = console.width - sum(widths) - 2 * len(fixed)  # two characters between columns
    label_words = max((len(word) for *_, label in rows for word in label.split()), default=5)
    widest = max([len("components"), *(len(part) for _, _, parts, _ in rows for part in parts)])
    longest = max((len(" ".join(parts)) for _, _, parts, _ in rows), default=0)
    packed_to = max(widest, min(longest, room - max(label_words, 8) - 2))
    for column in (*fixed, "components", "label"):
        table.add_column(column, overflow="fold", no_wrap=column != "label")
    for cells, chosen, parts, label in rows:
        shot_id, segment_index, index, take, engine, seed, score = cells
        table.add_row(escape(shot_id), segment_index, index,
                      f"[bold green]{take}[/]" if chosen else take, engine, seed, score,
                      _packed(parts, packed_to), escape(label))
    console.print(table)
    for seam in cut.weak_seams:
        typer.echo(f"weak seam: {seam['after']} -> {seam['shot']} scored {seam['score']}")


@app.command()
@handled
def pick(storyboard: StoryboardArg, shot: Annotated[str, typer.Argument(help="Shot id, or SHOT#keyframe for its keyframe.")],
         take: Annotated[str | None, typer.Argument(help="Candidate number or take id prefix.")] = None,
         clear: Annotated[bool, typer.Option("--clear", help="Remove the pin.")] = False) -> None:
    """Pin a shot to one take, or its keyframe to one still with SHOT#keyframe (kept
    beside the storyboard, used by the next render)."""
    from .picks import check_pick, save_pick

    loaded = _load(storyboard)
    shot_id, _, part = shot.partition("#")
    if shot_id not in {s.id for s in loaded.storyboard.shots}:
        raise InputError(f"no shot '{shot_id}' in {storyboard}")
    if part and (part != "keyframe" or loaded.keyframe(shot_id) is None):
        raise InputError(f"shot '{shot_id}' has no {part!r} to pin"
                         + (" (it starts from no keyframe)" if part == "keyframe" else
                            "; pin SHOT, or SHOT#keyframe"))
    if take is None and not clear:
        raise InputError("give a take (number or id prefix) or --clear")
    if take is not None and not clear:
        check_pick(loaded, shot, take)
    save_pick(loaded.path, shot, None if clear else take)
    typer.echo(f"{shot}: {'unpinned' if clear else f'pinned to {take}'}")


def _say_dry_run(storyboard: Path, planned: dict[str, Any]) -> None:
    takes = sum(planned.get("takes", {}).values())
    typer.echo(f"{storyboard}: valid; dry run: {plural(len(planned['shots']), 'shot')}, "
               f"{plural(planned['total_frames'], 'frame')}, {plural(takes, 'take')} planned; "
               "nothing generated")
    for line in planned["cost_lines"]:
        typer.echo(f"  {line}")


@app.command()
@handled
def batch(
    paths: Annotated[list[str], typer.Argument(help="Storyboards: files, folders (their *.yaml) "
                                                    "and glob patterns.", show_default=False)],
    cache: Annotated[Path | None, typer.Option("--cache", help="One take store for every storyboard "
                                               "\\[default: each one's own].")] = None,
    quality: Annotated[str, typer.Option(help="final, or draft for fast previews.")] = "final",
    no_variants: Annotated[bool, typer.Option("--no-variants", help="Render main cuts only.")] = False,
    jobs: Annotated[int | None, typer.Option("--jobs", min=1, help="Threads for the CPU stages "
                                             "(storing and scoring takes) \\[default: the cores].")] = None,
    max_cost: Annotated[float | None, typer.Option(
        "--max-cost", min=0, help="Per storyboard: refuse it if its hosted takes are estimated "
                                  "above this many USD.")] = None,
    summary: Annotated[Path, typer.Option("--summary", help="Where to write the JSON summary.")]
        = Path("stitch-batch.json"),
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Render many storyboards in one process, sharing engines; go on past failures.
    Exit 0 if all rendered, 1 if any failed, 2 if any was invalid."""
    from .batch import find_storyboards, render_batch
    from .media import atomic_output
    from .render import RenderOptions
    from .ui import PlainReporter

    storyboards = find_storyboards(paths)
    options = RenderOptions(cache=cache, quality=_quality(quality),
                            variants=[] if no_variants else None, max_cost=max_cost,
                            executor=executor, address=address)

    def said(entry: Any) -> None:
        if entry.issues:  # one problem a line, as `stitch validate` says them
            _err(f"{entry.storyboard}: {entry.status}: {plural(len(entry.issues), 'problem')} "
                 f"({entry.seconds:.1f} s)")
            for issue in entry.issues:
                _err(f"  {issue}")
            return
        _err(f"{entry.storyboard}: {entry.status}" + (f": {entry.message}" if entry.message else "")
             + f" ({entry.seconds:.1f} s)")

    result = render_batch(storyboards, options, jobs=jobs, on_done=said, plan_only=dry_run,
                          reporter=lambda path: PlainReporter(prefix=f"{path.name} "))
    report = result.to_json()
    with atomic_output(summary) as partial:
        partial.write_text(json.dumps(report, indent=2) + "\n")
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        def shown(path: str | Path) -> str:  # below the working folder: from there
            return escape(os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else str(path))

        table = Table(title=f"stitch batch: {report['rendered']} ok, {report['failed']} failed, "
                            f"{report['invalid']} invalid", **_NARROW_TABLE)
        for column in ("storyboard", "status", "outputs", "takes made/reused", "seconds", "message"):
            table.add_column(column, overflow="fold", no_wrap=column in ("storyboard", "status", "seconds"))
        for entry in result.entries:
            made = entry.result or {}
            outputs = ", ".join(shown(o["path"]) for o in made.get("outputs", []))
            takes = f"{made['takes_generated']}/{made['takes_reused']}" if "takes_generated" in made else ""
            # A storyboard's problems were said a line each as it was read, and are in the summary.
            message = f"{plural(len(entry.issues), 'problem')}, listed above" if entry.issues else escape(entry.message)
            table.add_row(shown(entry.storyboard), entry.status, outputs, takes, f"{entry.seconds:.1f}", message)
        Console().print(table)
        typer.echo(f"summary: {summary}")
    if result.exit_code:
        raise typer.Exit(result.exit_code)


class _CacheCommands(_Commands):
    """`stitch cache` subcommands; anything else (a storyboard, --check, --clean) is
    `stitch cache show`, as `stitch cache` was before it had subcommands."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["show", *args]
        return super().parse_args(ctx, args)


cache_app = typer.Typer(cls=_CacheCommands, help="What the take store holds: show, check and "
                        "clean it, list takes, disk use, prune.", no_args_is_help=False)
app.add_typer(cache_app, name="cache")
StoreArg = Annotated[Path | None, typer.Argument(
    help="Use this storyboard's cache (default .stitchcraft/cache beside it; without a "
    "storyboard, the one in this folder).", show_default=False)]


def _store(storyboard: Path | None, cache: Path | None):
    from .generate import default_cache, folder_cache
    from .store import TakeStore

    if cache is None and storyboard is None:
        cache = folder_cache(Path("."))  # as a render of a storyboard in this folder finds it
        if not cache.is_dir():
            where = "at STITCHCRAFT_CACHE" if os.environ.get("STITCHCRAFT_CACHE") else "in this folder"
            raise InputError(f"no take store {where} ({cache}): give a storyboard or --cache DIR")
    root = cache if cache is not None else default_cache(_load(storyboard))  # type: ignore[arg-type]
    if not root.is_dir():
        raise InputError(f"{root}: no take store there")
    return TakeStore(root)


@cache_app.command("show")
@handled
def cache_show(storyboard: StoreArg = None, cache: CacheOpt = None,
               check: Annotated[bool, typer.Option("--check", help="Read every take in full and move "
                                                   "damaged ones aside.")] = False,
               clean: Annotated[bool, typer.Option("--clean", help="Delete damaged takes kept for "
                                                   "inspection and scratch of dead renders.")] = False,
               as_json: JsonOpt = False) -> None:
    """Count what the take store holds, and check or clean it (the default)."""
    store = _store(storyboard, cache)
    problems = store.check_all(deep=True) if check else []
    removed = [*store.remove_damaged(), *store.clean_tmp()] if clean else []
    stats = store.stats()
    if as_json:
        typer.echo(json.dumps({"ok": True, "cache": str(store.root), "takes": stats.takes,
                               "bytes": stats.bytes, "damaged": stats.damaged,
                               "damaged_bytes": stats.damaged_bytes, "scratch": stats.scratch,
                               "problems": problems, "removed": [str(p) for p in removed]}))
        return
    for problem in problems:
        _err(f"warning: {problem}")
    typer.echo(f"{store.root}: {stats.takes} takes, {stats.bytes / 1e6:.1f} MB; "
               f"{stats.damaged} damaged kept for inspection ({stats.damaged_bytes / 1e6:.1f} MB) in "
               f"{store.damaged}; {stats.scratch} scratch entries"
               + (f"; removed {len(removed)}" if clean else ""))


@cache_app.command("ls")
@handled
def cache_ls(storyboard: StoreArg = None, cache: CacheOpt = None, as_json: JsonOpt = False) -> None:
    """List the takes, most recently used first."""
    import time

    from .cache import list_takes

    takes = list_takes(_store(storyboard, cache))
    if as_json:
        typer.echo(json.dumps([t.to_json() for t in takes], indent=2))
        return
    now = time.time()
    for take in takes:
        # A grade holds its transform, not its pictures (until chosen): its made take, which
        # prune keeps beside it, is what was paid for and what it is read from.
        grade = f"  (a grade of {take.needs[:12]})" if take.needs else ""
        typer.echo(f"{take.id[:12]}  {take.engine:<10} {take.frames:>5} fr {take.size:>9} "
                   f"{take.bytes / 1e6:8.1f} MB  used {(now - take.used) / 86400:5.1f} d ago  {take.label}{grade}")
    typer.echo(plural(len(takes), "take"))


@cache_app.command("du")
@handled
def cache_du(storyboard: StoreArg = None, cache: CacheOpt = None, as_json: JsonOpt = False) -> None:
    """Disk use of the take store, by part."""
    from .cache import disk_usage

    store = _store(storyboard, cache)
    usage = disk_usage(store)
    if as_json:
        typer.echo(json.dumps({"cache": str(store.root), "bytes": usage, "total": sum(usage.values())}))
        return
    for part, size in usage.items():
        typer.echo(f"{size / 1e6:10.1f} MB  {part}")
    typer.echo(f"{sum(usage.values()) / 1e6:10.1f} MB  total ({store.root})")


@cache_app.command("prune")
@handled
def cache_prune(
    storyboards: Annotated[list[Path] | None, typer.Argument(
        help="With --unused: the storyboards whose takes to keep; without: one storyboard "
             "whose cache to prune (none: the cache in this folder).", show_default=False)] = None,
    cache: CacheOpt = None,
    older_than: Annotated[str | None, typer.Option("--older-than", help="Delete takes no render "
                                                   "used for this long (30d, 12h, 2w).")] = None,
    unused: Annotated[bool, typer.Option("--unused", help="Delete takes the listed storyboards' "
                                         "last renders do not use.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would go.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete old or unused takes (never one a hosted job may still be making)."""
    from .cache import parse_age, prune, used_by

    boards = [_load(path) for path in storyboards or []]
    if unused and not boards:
        raise InputError("--unused needs the storyboards whose takes to keep")
    if len(boards) > 1 and not unused:
        raise InputError("several storyboards are given with --unused (keep what they use); "
                         "without it, one storyboard names the cache to prune")
    store = _store(boards[0].path if boards else None, cache)
    keep = set().union(*(used_by(b) for b in boards)) if unused else None
    pruned = prune(store, older_than=parse_age(older_than) if older_than else None, keep=keep,
                   dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps({"ok": True, "cache": str(store.root), "dry_run": dry_run,
                               **pruned.to_json()}))
        return
    for take_id in pruned.kept_running:
        _err(f"kept {take_id[:12]}: its hosted job may still be running")
    jobs = plural(len(pruned.jobs), "finished job entry", "finished job entries")
    typer.echo(f"{'would delete' if dry_run else 'deleted'} {plural(len(pruned.takes), 'take')} and "
               f"{jobs}, {pruned.bytes / 1e6:.1f} MB ({store.root})")


@app.command()
@handled
def export(storyboard: StoryboardArg,
           fmt: Annotated[str, typer.Option("--format", help="otio, fcpxml, fcp7 (Premiere) or edl.")] = "otio",
           output: Annotated[Path | None, typer.Option("--output", help="The timeline file "
                                                       "\\[default: beside the video].")] = None,
           variant: Annotated[str | None, typer.Option(help="Export a variant's cut.")] = None,
           as_json: JsonOpt = False) -> None:
    """Write the last render's cut as a timeline for an editor, its takes copied beside it."""
    from .report.export import export_timeline

    result = export_timeline(_load(storyboard), fmt, output=output, variant=variant)
    if as_json:
        typer.echo(json.dumps({"ok": True, **result.to_json()}, indent=2))
        return
    for note in result.notes:
        _err(f"note: {note}")
    typer.echo(f"wrote {result.path} ({result.clips} clips, {result.transitions} transitions, "
               f"{result.markers} caption markers); media: {result.media} ({result.files} files, "
               f"{result.linked} linked)")


@app.command()
@handled
def inspect(video: Annotated[Path, typer.Argument(help="A rendered video.", show_default=False)],
            as_json: JsonOpt = False) -> None:
    """Show a video's content credentials (C2PA manifest, tags, sidecar) and whether its
    manifest validates: exit 0 if it does, 1 if it is invalid or missing."""
    from .provenance import inspect_video

    found = inspect_video(video)
    if as_json:
        typer.echo(json.dumps(found.to_json(), indent=2))
    else:
        for line in _inspection_lines(found):
            typer.echo(line)
    if not found.manifest.intact:
        raise typer.Exit(1)


def _inspection_lines(found: Any) -> list[str]:
    m = found.manifest
    state = {"Trusted": "valid, signer trusted", "Valid": "valid" + (", signer not trusted" if m.untrusted else ""),
             "Missing": "missing (no C2PA manifest)"}.get(m.state, "invalid")
    lines = [f"{found.video}", f"  C2PA manifest: {state}"]
    lines += [f"    {failure}" for failure in m.failures]
    if m.signer:
        lines.append(f"  signed by: {m.signer} (issuer {m.issuer})"
                     + ("  [development certificate]" if m.development else ""))
    facts = found.facts
    if facts is None:
        lines.append("  no stitchcraft credentials found")
    else:
        source = "manifest" if m.intact and m.facts else "container tags (not protected)"
        lines += [f"  facts from: {source}", f"  tool: {facts.tool}",
                  f"  storyboard: {facts.storyboard} sha256 {facts.storyboard_sha256}",
                  f"  {facts.statement()}", f"  source type: {facts.digital_source_type}"]
        for shot in facts.shots:
            made = "; ".join(f"{t.engine}" + (f" model {t.model}" if t.model else "") + f" seed {t.seed}"
                             for t in shot.takes)
            lines.append(f"  shot {shot.id}: {shot.source}"
                         + (f" ({shot.digital_source_type.rsplit('/', 1)[-1]})" if shot.digital_source_type else "")
                         + f", frames {shot.start}+{shot.frames}"
                         + (f", {shot.file}" if shot.file else f", {made}" if shot.source == "generated" else ""))
    lines.append(f"  tags: {'agree with the manifest' if m.facts and found.tag_facts == m.facts else 'differ or absent'}")
    if found.sidecar is not None:
        lines.append(f"  sidecar: {found.sidecar.name} "
                     + ("(matches this file)" if found.sidecar_matches else "(for another version of this file)"))
    return lines


def _quality(value: str) -> str:
    if value not in ("final", "draft"):
        raise InputError(f"--quality must be 'final' or 'draft', not '{value}'")
    return value


def main() -> None:
    """Console-script entry point."""
    _return_freed_frames()
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _terminate)
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)


def _return_freed_frames() -> None:
    """Has glibc give freed frames back to the system. By default its mmap threshold
    rises to the largest block freed so far (up to 32 MB) and its trim threshold to twice
    that, so a heap keeps up to 64 MB free at its top, in each thread's arena: a hosted
    render with 16 downloads in flight held 1.0 GB, of which numpy used half (0.75 GB
    with this). Fixing the mmap threshold at that 32 MB keeps the trim threshold at
    128 KB; temporaries up to 32 MB still come from the heap (mapping each afresh would
    fault in its pages every time: a fixed 1 MB made scoring 50 % slower). A threshold the
    user set is left alone (``MALLOC_MMAP_THRESHOLD_``, or ``glibc.malloc.mmap_threshold``
    in ``GLIBC_TUNABLES``)."""
    import ctypes

    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ \
            or "glibc.malloc.mmap_threshold=" in os.environ.get("GLIBC_TUNABLES", ""):
        return
    try:
        ctypes.CDLL(None).mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD; fixed, it stops rising
    except (OSError, AttributeError):
        pass  # a C library without mallopt (musl)
