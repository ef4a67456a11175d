"""Scoring: every scorer, registered by name, and the `ScoreBook` the render uses.

Scorers (value 0..1, higher better; parts in their own units, see each class):

==============  ======  =====================================================  =======
name            shape   what it judges                                         weights
==============  ======  =====================================================  =======
``prompt``      take    CLIP text-image similarity to the shot's prompt        CLIP
``reference``   take    CLIP image similarity to the reference, style images   CLIP
``stability``   take    flashes, cuts, freezes, flicker, jitter, colour drift  none
``flicker``     take    LPIPS between consecutive frames                       LPIPS
``seam``        seam    SSIM, histogram, colour/luma and motion jump           none
``seam_clip``   seam    CLIP image similarity across the join                  CLIP
``seam_lpips``  seam    LPIPS distance across the join                         LPIPS
``drift``       drift   delta E, saturation and contrast against chain start   none
``still``       take    a keyframe as a picture: sharpness, exposure, framing  none
``identity``    take    the cast's faces against the take's (CLIP if found)    none
==============  ======  =====================================================  =======

A take of one frame is a still (a keyframe candidate): ``stability`` and ``flicker``
judge motion and leave it out; ``still`` judges nothing else; the rest judge both
(`Scorer.APPLIES_TO`). ``identity`` reads `FrameSource.cast`.

Model-backed scorers whose weights are missing are left out; the book says so once
per model in `ScoreBook.warnings`, naming what to install or where to put the file.
The module imports no torch: models load on first use.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from .base import FrameSource, Score, Scorer
from .classical import DriftScorer, SeamScorer, StabilityScorer
from .clip import PromptScorer, ReferenceScorer, SeamClipScorer
from .faces import IdentityScorer
from .perceptual import FlickerScorer, SeamLpipsScorer
from .still import StillScorer

if TYPE_CHECKING:
    from ..store import TakeStore
    from ..storyboard import Scoring

SCORERS: dict[str, type[Scorer]] = {
    cls.NAME: cls for cls in (PromptScorer, ReferenceScorer, StabilityScorer, FlickerScorer,
                              SeamScorer, SeamClipScorer, SeamLpipsScorer, DriftScorer,
                              StillScorer, IdentityScorer)
}
DEFAULT_WEIGHTS: dict[str, float] = {name: cls.DEFAULT_WEIGHT for name, cls in SCORERS.items()}

_MODEL_FAMILY = {"prompt": "CLIP", "reference": "CLIP", "seam_clip": "CLIP",
                 "flicker": "LPIPS", "seam_lpips": "LPIPS"}

__all__ = ["DEFAULT_WEIGHTS", "SCORERS", "FrameSource", "Score", "ScoreBook", "Scorer"]


class ScoreBook:
    """Scores takes, seams and drift with every scorer that can run here, caching
    results with the takes so a re-render never scores the same thing twice.

    Keep one `FrameSource` per take while scoring: it decodes each frame range once.

    Attributes:
        settings: The storyboard's ``scoring`` block.
        scorers: The scorers in use, by name (weight above 0 and able to run).
        warnings: One line per missing model, naming what to install or where to put
            the weights; empty when everything can run.
    """

    def __init__(self, settings: Scoring | None = None, store: TakeStore | None = None):
        from ..storyboard import Scoring

        self.settings = settings or Scoring()
        self.store = store
        self.scorers: dict[str, Scorer] = {}
        self.warnings: list[str] = []
        unknown = sorted(set(self.settings.weights) - set(SCORERS))
        if unknown:
            from ..errors import ConfigError

            raise ConfigError(f"scoring.weights: unknown scorer {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(SCORERS)}")
        missing: dict[str, list[str]] = defaultdict(list)
        for name, cls in SCORERS.items():
            if self.weight(name) <= 0:
                continue
            availability = cls.availability(self.settings)
            if availability:
                self.scorers[name] = cls(self.settings)
            else:
                missing[availability.reason].append(name)
        for reason, names in missing.items():
            family = _MODEL_FAMILY.get(names[0], "")
            self.warnings.append(f"{family + ' ' if family else ''}scorers {', '.join(names)} are off "
                                 f"(the render goes on without them): {reason}")
        self._memo: dict[str, Score | None] = {}
        self._keys: dict[str, str] = {}
        self._stats: dict[str, dict[str, float]] = defaultdict(
            lambda: {"calls": 0, "cached": 0, "seconds": 0.0, "frames_decoded": 0})

    # -- weights ---------------------------------------------------------------------

    def weight(self, name: str) -> float:
        """The weight of scorer `name`: the storyboard's, else its default. A qualified
        name such as ``seam:previous`` takes its scorer's weight."""
        base = name.split(":", 1)[0]
        return float(self.settings.weights.get(base, DEFAULT_WEIGHTS.get(base, 0.0)))

    def combine(self, scores: dict[str, Score]) -> float:
        """Weighted mean of the scores' values, in 0..1; 0.5 (no opinion) when nothing
        with a weight above 0 was scored."""
        total = weights = 0.0
        for name, score in scores.items():
            weight = self.weight(name)
            if weight > 0:
                total += weight * score.value
                weights += weight
        return total / weights if weights else 0.5

    def seam_value(self, seam_scores: dict[str, Score]) -> float:
        """The seam's combined value (seam-shape scorers only), 0..1, compared with
        ``scoring.seam_threshold``; 1.0 when there is nothing to judge."""
        seam_only = {name: s for name, s in seam_scores.items()
                     if SCORERS.get(name.split(":", 1)[0], Scorer).SHAPE == "seam"}
        return self.combine(seam_only) if seam_only else 1.0

    # -- scoring ---------------------------------------------------------------------

    def take_scores(self, take: FrameSource) -> dict[str, Score]:
        """Every take-shape score of `take`, from the store's cache where still valid."""
        cached = _cached_scores(self.store.load_scores(take.take_id) if self.store else None)
        results, fresh = self._run("take", take, None, cached)
        if fresh and self.store is not None:
            merged = dict(cached)
            merged.update(fresh)
            self.store.save_scores(take.take_id, {"scores": merged})
        return results

    def seam_scores(self, previous: FrameSource, take: FrameSource) -> dict[str, Score]:
        """Every seam-shape score of the join from `previous` (the chosen take before)
        into `take`."""
        return self._pair("seam", previous, take)

    def drift_scores(self, root: FrameSource, take: FrameSource) -> dict[str, Score]:
        """Every drift-shape score of `take` against its chain's first take `root`."""
        return self._pair("drift", root, take)

    def pair_samples(self) -> list[int]:
        """The `FrameSource.sample` counts pair scorers in use read of a take."""
        return sorted({s.PAIR_SAMPLES for s in self.scorers.values() if s.SHAPE != "take" and s.PAIR_SAMPLES})

    def stats(self) -> dict[str, Any]:
        """Cost so far: frames decoded and seconds spent, in all and per scorer."""
        per = {name: dict(values) for name, values in self._stats.items()}
        return {
            "frames_decoded": int(sum(v["frames_decoded"] for v in per.values())),
            "seconds": round(sum(v["seconds"] for v in per.values()), 4),
            "scorers": per,
        }

    def _pair(self, shape: str, previous: FrameSource, take: FrameSource) -> dict[str, Score]:
        key = hashlib.sha1(f"{shape}:{previous.take_id}:{take.take_id}".encode()).hexdigest()
        cached = _cached_scores(self.store.load_pair(key) if self.store else None)
        results, fresh = self._run(shape, take, previous, cached)
        if fresh and self.store is not None:
            merged = dict(cached)
            merged.update(fresh)
            self.store.save_pair(key, {"shape": shape, "from": previous.take_id, "to": take.take_id,
                                       "scores": merged})
        return results

    def _run(self, shape: str, take: FrameSource, previous: FrameSource | None,
             cached: dict[str, Any]) -> tuple[dict[str, Score], dict[str, Any]]:
        results: dict[str, Score] = {}
        fresh: dict[str, Any] = {}
        for name, scorer in self.scorers.items():
            if scorer.SHAPE != shape or not scorer.applies(take):
                continue
            key = self._cache_key(scorer, take, previous)
            memo_key = f"{shape}:{previous.take_id if previous else ''}:{take.take_id}:{key}"
            stats = self._stats[name]
            if memo_key in self._memo:
                found, score = True, self._memo[memo_key]
            else:
                found, score = _cached_score(cached.get(name), key)
            if found:
                stats["cached"] += 1
            else:
                decoded_before = take.decoded + (previous.decoded if previous else 0)
                started = time.perf_counter()
                score = scorer.score(take, previous)
                stats["seconds"] += time.perf_counter() - started
                stats["calls"] += 1
                stats["frames_decoded"] += take.decoded + (previous.decoded if previous else 0) - decoded_before
                fresh[name] = {"key": key, "value": None} if score is None else {
                    "key": key, "value": score.value, "parts": score.parts, "note": score.note}
            self._memo[memo_key] = score
            if score is not None:
                results[name] = score
        return results, fresh

    def _cache_key(self, scorer: Scorer, take: FrameSource, previous: FrameSource | None) -> str:
        if scorer.NAME not in self._keys:
            self._keys[scorer.NAME] = f"{scorer.NAME}@{scorer.VERSION}|{scorer.identity()}"
        inputs = scorer.inputs_key(take, previous)
        return self._keys[scorer.NAME] + (f"|{inputs}" if inputs else "")


def _cached_scores(record: dict[str, Any] | None) -> dict[str, Any]:
    """The scores in a cache record; empty when it holds none (it is then rewritten)."""
    scores = (record or {}).get("scores")
    return scores if isinstance(scores, dict) else {}


def _cached_score(entry: Any, key: str) -> tuple[bool, Score | None]:
    """(found, score) from one cached entry: found only when the entry was made under
    `key` and reads back whole; a damaged entry counts as not found and is recomputed."""
    if not isinstance(entry, dict) or entry.get("key") != key:
        return False, None
    if entry.get("value") is None:
        return True, None
    try:
        value = float(entry["value"])
        parts = {str(k): float(v) for k, v in (entry.get("parts") or {}).items()}
    except (TypeError, ValueError, AttributeError):
        return False, None
    if not math.isfinite(value):
        return False, None
    return True, Score(value, parts, str(entry.get("note", "")))
