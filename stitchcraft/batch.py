"""Batch renders: many storyboards in one process, one after another.

The storyboards share what is costly to set up: the executor's CPU pool (its width is
``--jobs``) and every loaded engine (a pipeline loads once for the whole batch; one
engine instance per engine name and settings, since settings may differ between
storyboards). A storyboard that is invalid or fails is recorded and the batch goes on.
"""

from __future__ import annotations

import glob
import json
import time
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError, StitchError, StoryboardError, os_cause
from .generate.executor import Executor, executor_for
from .ui import plural

if TYPE_CHECKING:
    from .engines.base import Engine
    from .render import RenderOptions, Reporter
    from .storyboard.load import LoadedStoryboard

STORYBOARD_SUFFIXES = (".yaml", ".yml")


class _EngineView(MutableMapping[str, "Engine"]):
    """One storyboard's engines by name, kept in the batch's pool under (name, settings)."""

    def __init__(self, pool: dict[tuple[str, str], Engine], loaded: LoadedStoryboard):
        self.pool, self.loaded = pool, loaded

    def _key(self, name: str) -> tuple[str, str]:
        settings = self.loaded.engine_settings(name)
        return name, json.dumps(settings.model_dump(mode="json"), sort_keys=True, default=str)

    def __getitem__(self, name: str) -> Engine:
        return self.pool[self._key(name)]

    def __setitem__(self, name: str, engine: Engine) -> None:
        self.pool[self._key(name)] = engine

    def __delitem__(self, name: str) -> None:
        del self.pool[self._key(name)]

    def __iter__(self) -> Iterator[str]:
        return iter([name for name, settings in list(self.pool) if (name, settings) == self._key(name)])

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass
class Shared:
    """What the renders of a batch share (`RenderOptions.shared`).

    Attributes:
        executor: Engine lanes and the CPU pool.
        engines: Loaded engines by (name, settings as JSON).
    """

    executor: Executor
    engines: dict[tuple[str, str], Engine] = field(default_factory=dict)

    def engines_for(self, loaded: LoadedStoryboard) -> MutableMapping[str, Engine]:
        """A storyboard's view of the pool: its engines by name, with its settings."""
        return _EngineView(self.engines, loaded)

    def close(self) -> None:
        self.executor.close()
        for engine in self.engines.values():
            engine.close()
        self.engines.clear()


@dataclass
class BatchEntry:
    """What became of one storyboard.

    Attributes:
        storyboard: Its path.
        status: ``ok``, ``failed`` (the render failed: exit 1) or ``invalid`` (the
            storyboard, its media or the options are wrong: exit 2).
        message: Why it failed or is invalid.
        issues: Every validation problem (file:line:column: field: problem).
        result: The render's JSON result when it rendered.
    """

    storyboard: Path
    status: str
    message: str = ""
    issues: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return {"ok": 0, "failed": 1, "invalid": 2}[self.status]

    def to_json(self) -> dict[str, Any]:
        return {"storyboard": str(self.storyboard), "status": self.status, "exit_code": self.exit_code,
                "message": self.message, "issues": self.issues, "seconds": round(self.seconds, 2),
                "result": self.result}


@dataclass
class BatchResult:
    entries: list[BatchEntry]

    @property
    def exit_code(self) -> int:
        """2 if any storyboard was invalid, else 1 if any failed, else 0."""
        codes = {e.exit_code for e in self.entries}
        return 2 if 2 in codes else 1 if 1 in codes else 0

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.exit_code == 0, "exit_code": self.exit_code,
                "rendered": sum(e.status == "ok" for e in self.entries),
                "failed": sum(e.status == "failed" for e in self.entries),
                "invalid": sum(e.status == "invalid" for e in self.entries),
                "storyboards": [e.to_json() for e in self.entries]}


def find_storyboards(paths: Sequence[str | Path]) -> list[Path]:
    """The storyboards named by files, folders (their ``*.yaml`` and ``*.yml``, not
    recursively) and glob patterns, in order, each once.

    Raises:
        InputError: a path that does not exist and matches nothing, or no storyboard at all.
    """
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found += sorted(p for p in path.iterdir()
                            if p.suffix.lower() in STORYBOARD_SUFFIXES and p.is_file()
                            and not p.name.startswith("."))
        elif path.exists():
            found.append(path)
        elif glob.has_magic(str(given)):
            matches = sorted(Path(p) for p in glob.glob(str(given), recursive=True))
            if not matches:
                raise InputError(f"{given}: matches no file")
            found += [p for p in matches if p.is_file()]
        else:
            raise InputError(f"{given}: no such file or folder")
    unique = list(dict.fromkeys(p.absolute() for p in found))
    if not unique:
        raise InputError(f"no storyboard (*.yaml, *.yml) in {', '.join(map(str, paths))}")
    return unique


def dry_run(loaded: LoadedStoryboard, options: RenderOptions) -> dict[str, Any]:
    """What a render would do, generating nothing: the plan and the hosted takes' cost.

    Raises:
        ConfigError: the estimate is above ``options.max_cost``.
    """
    from .cost import estimate, previous_render
    from .errors import ConfigError
    from .generate import default_cache, engine_fingerprints, storyboard_digests
    from .outputs import cut_paths
    from .plan import plan_storyboard
    from .store import TakeStore

    quality = options.quality
    board = loaded.for_quality(quality)
    planned = plan_storyboard(board, quality=quality, digests=storyboard_digests(board),
                              fingerprints=engine_fingerprints(board, quality), beam=options.beam)
    root = options.cache or default_cache(board)
    costs = estimate(board, planned, beam=options.beam, store=TakeStore(root) if root.is_dir() else None,
                     previous=previous_render(cut_paths(board, quality, variants=[])[0].path),
                     resubmit=options.resubmit)
    if options.max_cost is not None and costs.usd > options.max_cost:
        raise ConfigError(f"the hosted takes are estimated at ${costs.usd:.2f}, over --max-cost "
                          f"{options.max_cost:g}")
    return {"ok": True, "dry_run": True, **planned.to_json(), "hosted": costs.to_json(),
            "cost_lines": costs.lines()}


def render_batch(storyboards: Sequence[Path], options: RenderOptions, *, jobs: int | None = None,
                 reporter: Callable[[Path], Reporter] | None = None,
                 on_done: Callable[[BatchEntry], None] | None = None,
                 plan_only: bool = False) -> BatchResult:
    """Renders storyboards one after another, going on past those that fail.

    Args:
        storyboards: The storyboards (see `find_storyboards`).
        options: How to render each (its picks are each storyboard's own).
        jobs: Threads for the CPU stages (storing and scoring takes); None for the
            machine's cores.
        plan_only: Validate and plan each (`dry_run`), generating nothing.
        reporter: Makes the reporter for a storyboard's render.
        on_done: Called with each storyboard's entry as soon as it is known.

    Returns:
        One entry per storyboard, in order. KeyboardInterrupt is not caught.
    """
    import dataclasses

    from .picks import load_picks
    from .render import SilentReporter, render
    from .storyboard.load import load_storyboard

    shared = Shared(executor_for(options.executor, options.address, cpu_workers=jobs))
    entries: list[BatchEntry] = []
    try:
        for path in storyboards:
            began = time.monotonic()
            try:
                loaded = load_storyboard(path)
                own = dataclasses.replace(options, picks={**load_picks(loaded.path), **options.picks},
                                          shared=shared)
                if plan_only:
                    entry = BatchEntry(path, "ok", result=dry_run(loaded, own))
                else:
                    result = render(loaded, own, reporter(path) if reporter else SilentReporter())
                    entry = BatchEntry(path, "ok", result=result.to_json())
            except StoryboardError as exc:
                issues = [str(i) for i in exc.issues]
                entry = BatchEntry(path, "invalid", f"{plural(len(issues), 'problem')}: " + "; ".join(issues),
                                   issues)
            except InputError as exc:
                entry = BatchEntry(path, "invalid", str(exc))
            except StitchError as exc:
                entry = BatchEntry(path, "failed", str(exc))
            except OSError as exc:
                where = exc.filename if exc.filename is not None else path
                entry = BatchEntry(path, "failed", f"{where}: {os_cause(exc)}")
            except Exception as exc:  # a bug in one render must not lose the others
                entry = BatchEntry(path, "failed", f"internal error ({type(exc).__name__}: {exc}); "
                                                   "this is a bug in stitchcraft")
            entry.seconds = time.monotonic() - began
            entries.append(entry)
            if on_done is not None:
                on_done(entry)
    finally:
        shared.close()
    return BatchResult(entries)
