"""Test engines for the Ray executor, in a module Ray's worker processes can import
(tests/ is on their PYTHONPATH; a class defined inside a test would not be there).

`Counting` stands in for a GPU model: it makes frames from its seed, continuing its
conditioning frames, and appends one line to the file named by ``STITCHCRAFT_TEST_CALLS``
when it starts a take and one when it finishes it, so a test counts engine calls across
processes. When the file named by ``STITCHCRAFT_TEST_CRASH`` exists, the first worker
to remove it dies mid-take (`os._exit`), as a worker whose machine goes away. A shot
whose prompt is "fall over" raises an `EngineError`. Its frames (`continuing_frames`) are
also those of the scheduler tests' stand-in model.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import numpy as np

from stitchcraft.engines.base import Capabilities, Engine, SegmentRequest, Take
from stitchcraft.errors import EngineError

CALLS_ENV = "STITCHCRAFT_TEST_CALLS"
CRASH_ENV = "STITCHCRAFT_TEST_CRASH"


def take_key(request: SegmentRequest, seed: int) -> str:
    """What decides a take's pixels here: its shot, segment, seed and conditioning."""
    condition = request.condition_frames
    digest = hashlib.sha256(condition.tobytes()).hexdigest()[:12] if condition is not None else "-"
    return f"{request.shot_id}/{request.segment}/{seed}/{digest}"


def continuing_frames(request: SegmentRequest, seed: int) -> np.ndarray:
    """A stand-in model's take: its conditioning frame (or the seed's noise) brightening
    by a step the seed picks, frame after frame."""
    rng = np.random.default_rng(seed)
    if request.condition_frames is not None:
        start = request.condition_frames[-1].astype(np.int16)
    else:
        start = rng.integers(0, 255, (request.height, request.width, 3)).astype(np.int16)
    ramp = np.arange(request.frames, dtype=np.int16)[:, None, None, None] * int(rng.integers(1, 4))
    return np.clip(start[None] + ramp, 0, 255).astype(np.uint8)


class Counting(Engine):
    """A stand-in GPU engine whose calls are counted in a file."""

    NAME = "ray-counting"
    CAPABILITIES = Capabilities(kinds=frozenset({"prompt"}), text_to_video=True, image_to_video=True,
                                condition_frames=1, needs_gpu=True)

    def generate(self, request: SegmentRequest) -> Iterator[Take]:
        for seed in request.seeds:
            key = take_key(request, seed)
            self._log(f"start {key}")
            if request.prompt == "fall over":
                raise EngineError("the model fell over")
            crash = os.environ.get(CRASH_ENV)
            if crash:
                try:
                    os.remove(crash)
                except FileNotFoundError:
                    pass
                else:  # this worker won the removal: it dies mid-take
                    os._exit(17)
            frames = continuing_frames(request, seed)
            self._log(f"done {key}")
            yield Take(frames=frames, seed=seed, label=f"counting {seed}", meta={"model": "test/counting"})

    @staticmethod
    def _log(line: str) -> None:
        path = os.environ.get(CALLS_ENV)
        if path:
            with open(path, "a") as log:
                log.write(line + "\n")
