"""What stitchcraft's diffusers engines add on top of the raw pipeline calls.

Builds the tiny random-weight pipelines of tests/tiny_pipelines.py, then for each
engine and request kind times, side by side and interleaved:

  raw     the engine's own loaded pipeline called directly with the same arguments
          (prompt and image repeated per take, one seeded generator per take, np output)
  engine  Engine.generate(request) end to end: checks, planning, conditioning frames to
          PIL, the call, float -> uint8, dropping the conditioning frames, Take + meta

on CUDA in bf16 when a GPU is present (else CPU fp32), and prints the per-call medians
and the overhead ratio engine / raw. Tiny models make the pipeline's own work small,
so the ratio is an upper bound on what orchestration costs with real weights.

    python benchmarks/engine_overhead.py [--reps 20] [--candidates 4] [--root DIR]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _settings_class():
    from stitchcraft.storyboard import EngineSettings

    if "image_model" in EngineSettings.model_fields:
        return EngineSettings

    class Settings(EngineSettings):
        image_model: str | None = None

    return Settings


def _tail(frames: int, size: int) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size]
    return np.stack([np.stack([(xs * 4 + t * 9) % 256, ys * 4 % 256, np.full_like(xs, 90)], -1)
                     for t in range(frames)]).astype(np.uint8)


def _cases(size: int, candidates: int, still: Path):
    from stitchcraft.engines import SegmentRequest

    def make(kind="prompt", frames=9, prompt="a red car on the road at night", **changes):
        return SegmentRequest(shot_id="bench", segment=0, kind=kind, frames=frames, width=size,
                              height=size, fps=Fraction(24), seeds=list(range(candidates)),
                              prompt=prompt, **changes)

    tail = _tail(12, size)
    return [
        ("ltx-video", "text", make()),
        ("ltx-video", "chain", make(frames=17, condition_frames=tail)),
        ("wan", "text", make()),
        ("wan", "chain", make(condition_frames=tail)),
        ("wan", "bridge", make(condition_frames=tail, last_frame=tail[0])),
        ("svd", "image", make(kind="image", frames=14, image=still, prompt=None)),
        ("svd", "chain", make(frames=14, condition_frames=tail, prompt=None)),
        ("cogvideox", "text", make()),
        ("cogvideox", "chain", make(condition_frames=tail)),
    ]


def _raw_call(engine, request):
    """The same pipeline call the engine makes, without the engine around it."""
    import torch

    call = engine.plan(request)
    pipe = engine._pipeline(call.pipeline)
    batch = len(request.seeds) if call.batchable else 1

    def run():
        for start in range(0, len(request.seeds), batch):
            seeds = request.seeds[start:start + batch]
            arguments = dict(call.kwargs)
            for name, value in call.per_take.items():
                if value is not None:
                    arguments[name] = [value] * len(seeds)
            pipe(**arguments, generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
                 output_type="np")

    return run


def _all_takes(engine, request) -> list:
    return list(engine.generate(request))


def _batch_drift(engine, request) -> tuple[int, bool]:
    """How far (uint8 levels) the last seed of a batch is from the same seed made alone,
    and whether making it alone twice gives identical frames."""
    from dataclasses import replace

    batched = list(engine.generate(request))[-1]
    alone = next(engine.generate(replace(request, seeds=[batched.seed])))
    again = next(engine.generate(replace(request, seeds=[batched.seed])))
    drift = int(np.abs(batched.frames.astype(int) - alone.frames.astype(int)).max())
    return drift, bool(np.array_equal(alone.frames, again.frames))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--root", type=Path, default=None, help="where to save the tiny pipelines")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    import torch
    from PIL import Image
    from tiny_pipelines import tiny_engine_settings

    from stitchcraft.engines import engine_class

    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", "bf16") if cuda else ("cpu", "fp32")
    root = args.root or Path(tempfile.mkdtemp(prefix="stitchcraft-bench-"))
    settings = tiny_engine_settings(root, device=device, dtype=dtype, steps=4)
    still = root / "still.png"
    Image.fromarray(_tail(1, args.size)[0]).save(still)
    Settings = _settings_class()
    engines = {name: engine_class(name)(Settings(**value)) for name, value in settings.items()}

    def timed(fn) -> float:
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - started

    print(f"device {torch.cuda.get_device_name() if cuda else 'cpu'}, dtype {dtype}, "
          f"torch {torch.__version__}, {args.candidates} candidates per call, "
          f"{args.size}x{args.size}, 4 steps, {args.reps} reps (medians)")
    print(f"{'engine':<10} {'request':<7} {'raw ms':>9} {'engine ms':>10} {'overhead':>9} "
          f"{'drift':>6} {'repeat':>6}")
    print("(drift: most uint8 levels a take made in a batch differs from it made alone; "
          "repeat: the same seed made twice gives identical frames)")
    results = []
    for name, label, request in _cases(args.size, args.candidates, still):
        engine = engines[name]
        raw = _raw_call(engine, request)
        generate = functools.partial(_all_takes, engine, request)
        for _ in range(2):  # load, compile kernels, warm caches
            raw()
            generate()
        raw_times, engine_times = [], []
        for _ in range(args.reps):  # interleaved, so drift hits both alike
            raw_times.append(timed(raw))
            engine_times.append(timed(generate))
        raw_ms = statistics.median(raw_times) * 1000
        engine_ms = statistics.median(engine_times) * 1000
        ratio = engine_ms / raw_ms
        drift, repeatable = _batch_drift(engine, request)
        results.append({"engine": name, "request": label, "raw_ms": round(raw_ms, 2),
                        "engine_ms": round(engine_ms, 2), "ratio": round(ratio, 4),
                        "batch_vs_alone_max_levels": drift, "repeat_identical": repeatable})
        print(f"{name:<10} {label:<7} {raw_ms:9.1f} {engine_ms:10.1f} {100 * (ratio - 1):8.1f}%"
              f" {drift:>6} {'yes' if repeatable else 'NO':>6}")
    total_raw = sum(r["raw_ms"] for r in results)
    total_engine = sum(r["engine_ms"] for r in results)
    print(f"{'all':<18} {total_raw:9.1f} {total_engine:10.1f} "
          f"{100 * (total_engine / total_raw - 1):8.1f}%")
    if args.json:
        args.json.write_text(json.dumps({"device": device, "dtype": dtype, "results": results},
                                        indent=2))
    for engine in engines.values():
        engine.close()


if __name__ == "__main__":
    main()
