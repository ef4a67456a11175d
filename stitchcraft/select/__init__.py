"""The select stage: which take of every segment makes the cut.

- `beam`: the pure beam search over units (greedy at width 1);
- `units`: segments in generation order, linked to what they continue from;
- `choose`: the stage itself, asking the generate stage for candidates (ahead of time
  where their inputs are known), scoring them, pinning, rerolling weak seams.
"""

from __future__ import annotations

from .beam import Options, Partial, beam_search, brute_force, extend
from .units import Unit, build_units

__all__ = ["Options", "Partial", "Unit", "beam_search", "brute_force", "build_units", "extend"]
