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
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from .errors import InputError, StitchError, StoryboardError

app = typer.Typer(
    name="stitch",
    help="Turn a YAML storyboard into a finished multi-shot video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])

StoryboardArg = Annotated[Path, typer.Argument(help="The storyboard YAML file.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable result on stdout.")]
CacheOpt = Annotated[Path | None, typer.Option("--cache", help="Take store folder "
                                               "[default: .stitchcraft/cache beside the storyboard].")]


def _err(message: str) -> None:
    typer.echo(message, err=True)


def handled(fn: F) -> F:
    """Runs a command, turning stitchcraft's exceptions into messages and exit codes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
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
            if os.environ.get("STITCHCRAFT_DEBUG"):
                raise
            message = f"internal error ({type(exc).__name__}: {exc}); this is a bug in stitchcraft"
            _err(f"error: {message}. Run again with STITCHCRAFT_DEBUG=1 for the traceback and "
                 "report it.")
            _fail(as_json, 1, StitchError(message))

    return wrapper  # type: ignore[return-value]


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
    from .jobs import left_running

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
    from .load import load_storyboard

    return load_storyboard(path)


@app.command()
@handled
def validate(storyboard: StoryboardArg, as_json: JsonOpt = False) -> None:
    """Check a storyboard without rendering: exit 0 if valid, 2 with the problems."""
    from .cast import describe_routes

    loaded = _load(storyboard)
    sb = loaded.storyboard
    routes = describe_routes(loaded)
    if as_json:
        typer.echo(json.dumps({"ok": True, "shots": len(sb.shots), "variants": len(sb.variants),
                               "routes": routes}))
    else:
        typer.echo(f"{storyboard}: ok ({len(sb.shots)} shots, {len(sb.variants)} variants)")
        for line in routes:
            typer.echo(f"  {line}")


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
    table = Table(title=f"{escape(result.title)}: {result.total_frames} frames at {result.fps} fps "
                        f"({timecode(result.total_frames, result.fps)})")
    for column in ("shot", "engine", "start", "frames", "in", "segments (new/generated)", "takes", "hash"):
        table.add_column(column, justify="right" if column in ("start", "frames", "in", "takes") else "left")
    for shot in result.shots:
        if shot.keyframe is not None:  # the still it animates, made first
            still = shot.keyframe.segments[0]
            table.add_row(escape(f"{shot.id} · keyframe"), shot.keyframe.engine, "", "1", "",
                          f"still {shot.keyframe.width}x{shot.keyframe.height}",
                          str(result.takes[still.key]), still.hash[:10])
        segments = ", ".join(f"{s.frames}/{s.generate}" + ("c" if s.chained else "") for s in shot.segments)
        transition = f"{shot.transition_type} {shot.transition_in or shot.fade_in}" if (
            shot.transition_in or shot.fade_in) else "cut"
        if shot.continuity != "cut":
            transition += f" · {shot.continuity}"
        table.add_row(escape(shot.id), shot.engine, timecode(shot.start, result.fps), str(shot.frames),
                      transition, segments, str(sum(result.takes[s.key] for s in shot.segments)),
                      shot.segments[0].hash[:10])
    console = Console()
    console.print(table)
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
    )
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

    table = Table(title="stitchcraft engines")
    for column in ("engine", "runs here", "makes", "frames", "why not / notes"):
        table.add_column(column, overflow="fold")
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
        table.add_row(row["name"], "[green]yes[/]" if row["available"] else "[red]no[/]", makes,
                      frames, escape(notes))
    Console().print(table)


@app.command()
@handled
def init(path: Annotated[Path, typer.Argument(help="Where to write the starter storyboard.")] = Path("storyboard.yaml"),
         force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False) -> None:
    """Write a starter storyboard to edit."""
    from .starter import STARTER

    if path.exists() and not force:
        raise InputError(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STARTER)
    typer.echo(f"wrote {path}; next: stitch validate {path} && stitch plan {path}")


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

    table = Table(title=f"takes of {escape(cut.output)}")
    for column in ("shot", "seg", "#", "take", "engine", "seed", "score", "components", "label"):
        table.add_column(column, overflow="fold")
    for shot_id, shot in cut.shots.items():
        for segment in shot.segments:
            for index, cand in enumerate(segment.candidates):
                chosen = cand.id == segment.chosen
                parts = " ".join(f"{k}={v:.2f}" for k, v in sorted(cand.components.items()))
                table.add_row(escape(shot_id), str(segment.index), str(index),
                              ("[bold green]* " if chosen else "  ") + cand.id[:10] + ("[/]" if chosen else ""),
                              cand.engine, str(cand.seed), f"{cand.score:.3f}" if cand.scored else "-",
                              parts, escape(cand.label))
    Console().print(table)
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


@app.command()
@handled
def cache(storyboard: Annotated[Path | None, typer.Argument(
              help="Use this storyboard's cache (default .stitchcraft/cache beside it).",
              show_default=False)] = None,
          cache: CacheOpt = None,
          check: Annotated[bool, typer.Option("--check", help="Read every take in full and move "
                                              "damaged ones aside.")] = False,
          clean: Annotated[bool, typer.Option("--clean", help="Delete damaged takes kept for "
                                              "inspection and scratch of dead renders.")] = False,
          as_json: JsonOpt = False) -> None:
    """Show what the take store holds, and check or clean it."""
    from .generate import default_cache
    from .store import TakeStore

    if cache is None and storyboard is None:
        raise InputError("give a storyboard or --cache DIR")
    root = cache if cache is not None else default_cache(_load(storyboard))  # type: ignore[arg-type]
    if not root.is_dir():
        raise InputError(f"{root}: no take store there")
    store = TakeStore(root)
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


def _quality(value: str) -> str:
    if value not in ("final", "draft"):
        raise InputError(f"--quality must be 'final' or 'draft', not '{value}'")
    return value


def main() -> None:
    """Console-script entry point."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _terminate)
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)
