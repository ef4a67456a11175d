"""The `stitch` command line: parse options, call the library, map errors to exit codes.

Exit codes: 0 ok, 1 the render failed, 2 invalid input (storyboard, media, options).
Heavy modules are imported inside commands so `stitch --help` and `stitch validate`
stay instant and never import torch.
"""

from __future__ import annotations

import functools
import json
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
        except KeyboardInterrupt:
            _err("interrupted; finished takes are kept in the cache and will be reused")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


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
    loaded = _load(storyboard)
    sb = loaded.storyboard
    if as_json:
        typer.echo(json.dumps({"ok": True, "shots": len(sb.shots), "variants": len(sb.variants)}))
    else:
        typer.echo(f"{storyboard}: ok ({len(sb.shots)} shots, {len(sb.variants)} variants)")


@app.command()
@handled
def plan(storyboard: StoryboardArg, as_json: JsonOpt = False,
         quality: Annotated[str, typer.Option(help="final or draft.")] = "final") -> None:
    """Show the exact plan: frames, segments, candidates and estimated GPU time."""
    from .generate import engine_fingerprints, storyboard_digests
    from .plan import plan_storyboard
    from .timeline import timecode

    loaded = _load(storyboard)
    result = plan_storyboard(loaded, quality=_quality(quality), digests=storyboard_digests(loaded),
                             fingerprints=engine_fingerprints(loaded))
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.title}: {result.total_frames} frames at {result.fps} fps "
                        f"({timecode(result.total_frames, result.fps)})")
    for column in ("shot", "engine", "start", "frames", "in", "segments (new/generated)", "takes", "hash"):
        table.add_column(column, justify="right" if column in ("start", "frames", "in", "takes") else "left")
    for shot in result.shots:
        segments = ", ".join(f"{s.frames}/{s.generate}" + ("c" if s.chained else "") for s in shot.segments)
        transition = f"{shot.transition_type} {shot.transition_in or shot.fade_in}" if (
            shot.transition_in or shot.fade_in) else "cut"
        table.add_row(shot.id, shot.engine, timecode(shot.start, result.fps), str(shot.frames),
                      transition, segments, str(shot.candidates * len(shot.segments)),
                      shot.segments[0].hash[:10])
    console = Console()
    console.print(table)
    console.print(f"generation order: {' -> '.join(result.order)}")
    if result.gpu_seconds:
        for engine, seconds in result.gpu_seconds.items():
            console.print(f"estimated GPU time for {engine}: {seconds / 60:.1f} min (H100-class)")
    else:
        console.print("no GPU engine needed: every shot renders on the CPU")


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
        picks=load_picks(loaded.path),
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
    """List engines and whether each can run here (and why not)."""
    from .engines import engine_class, engine_names
    from .storyboard import EngineSettings

    loaded = _load(storyboard) if storyboard else None
    rows = []
    for name in engine_names():
        cls = engine_class(name)
        settings = loaded.storyboard.engine_settings(name) if loaded else EngineSettings()
        available = cls.availability(settings)
        caps = cls.CAPABILITIES
        can = [k for k, on in (("text-to-video", caps.text_to_video), ("image-to-video", caps.image_to_video),
                               ("first+last frame", caps.first_last_frame)) if on]
        rows.append({"name": name, "available": available.ok, "reason": available.reason,
                     "kinds": sorted(caps.kinds), "can": can, "frame_rule": str(caps.frame_rule),
                     "max_frames": caps.max_frames, "gpu": caps.needs_gpu,
                     "description": cls.DESCRIPTION})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="stitchcraft engines")
    for column in ("engine", "runs here", "makes", "frames", "why not / notes"):
        table.add_column(column, overflow="fold")
    for row in rows:
        makes = ", ".join(row["can"]) or ", ".join(row["kinds"])
        frames = row["frame_rule"] + (f", max {row['max_frames']}" if row["max_frames"] else "")
        table.add_row(row["name"], "[green]yes[/]" if row["available"] else "[red]no[/]", makes,
                      frames, row["reason"] or row["description"])
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
    from .picks import read_manifest

    loaded = _load(storyboard)
    manifest = read_manifest(loaded, variant)
    if as_json:
        typer.echo(json.dumps(manifest["shots"], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"takes of {manifest['output']}")
    for column in ("shot", "seg", "#", "take", "engine", "seed", "score", "components", "label"):
        table.add_column(column, overflow="fold")
    for shot_id, shot in manifest["shots"].items():
        for segment in shot["segments"]:
            for index, cand in enumerate(segment["candidates"]):
                chosen = cand["id"] == segment["chosen"]
                parts = " ".join(f"{k}={v:.2f}" for k, v in sorted(cand.get("components", {}).items()))
                table.add_row(shot_id, str(segment["index"]), str(index),
                              ("[bold green]* " if chosen else "  ") + cand["id"][:10] + ("[/]" if chosen else ""),
                              cand["engine"], str(cand["seed"]),
                              f"{cand['score']:.3f}" if cand.get("score") is not None else "-",
                              parts, cand.get("label", ""))
    Console().print(table)
    for seam in manifest.get("weak_seams", []):
        typer.echo(f"weak seam: {seam['after']} -> {seam['shot']} scored {seam['score']}")


@app.command()
@handled
def pick(storyboard: StoryboardArg, shot: Annotated[str, typer.Argument(help="Shot id.")],
         take: Annotated[str | None, typer.Argument(help="Candidate number or take id prefix.")] = None,
         clear: Annotated[bool, typer.Option("--clear", help="Remove the pin.")] = False) -> None:
    """Pin a shot to one take (kept beside the storyboard, used by the next render)."""
    from .picks import save_pick

    loaded = _load(storyboard)
    if shot not in {s.id for s in loaded.storyboard.shots}:
        raise InputError(f"no shot '{shot}' in {storyboard}")
    if take is None and not clear:
        raise InputError("give a take (number or id prefix) or --clear")
    save_pick(loaded.path, shot, None if clear else take)
    typer.echo(f"{shot}: {'unpinned' if clear else f'pinned to {take}'}")


def _quality(value: str) -> str:
    if value not in ("final", "draft"):
        raise InputError(f"--quality must be 'final' or 'draft', not '{value}'")
    return value


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)
