"""The generate stage's pure helpers: the overlap blend of chained takes."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from stitchcraft.select.join import blend_overlap


def reference(tail: np.ndarray, lead: np.ndarray, length: int) -> np.ndarray:
    """The blend worked out pixel by pixel in exact fractions, rounded half up."""
    out = tail.copy()
    k = len(tail)
    for j in range(length):
        weight = Fraction(j + 1, length + 1)  # of the later take
        frame = k - length + j
        for index in np.ndindex(tail.shape[1:]):
            value = (1 - weight) * int(tail[frame][index]) + weight * int(lead[frame][index])
            out[frame][index] = int(value + Fraction(1, 2))  # floor(x + 1/2)
    return out


@pytest.mark.parametrize("k, length", [(1, 1), (4, 4), (9, 9), (9, 3), (4, None), (5, 0)])
def test_blend_matches_exact_reference(k, length):
    rng = np.random.default_rng(k * 10 + (length or 0))
    tail = rng.integers(0, 256, (k, 3, 5, 3), dtype=np.uint8)
    lead = rng.integers(0, 256, (k, 3, 5, 3), dtype=np.uint8)
    blended = blend_overlap(tail, lead, length)
    assert blended.dtype == np.uint8 and blended.shape == tail.shape  # no frame added
    np.testing.assert_array_equal(blended, reference(tail, lead, k if length is None else length))


def test_blend_weights_on_flat_frames():
    tail = np.zeros((5, 2, 2, 3), np.uint8)
    lead = np.full((5, 2, 2, 3), 200, np.uint8)
    # the first two frames are the earlier take's; then 1/4, 2/4, 3/4 of the later one
    assert blend_overlap(tail, lead, 3)[:, 0, 0, 0].tolist() == [0, 0, 50, 100, 150]
    assert blend_overlap(tail, lead)[:, 0, 0, 0].tolist() == [33, 67, 100, 133, 167]
    one = blend_overlap(np.full((1, 1, 1, 3), 10, np.uint8), np.full((1, 1, 1, 3), 13, np.uint8))
    assert one.ravel().tolist() == [12, 12, 12]   # 11.5 rounds half up
    # the input is never changed in place
    assert tail.max() == 0


def test_blend_refuses_what_does_not_overlap():
    frames = np.zeros((3, 2, 2, 3), np.uint8)
    with pytest.raises(ValueError, match="does not fit"):
        blend_overlap(frames, frames, 4)
    with pytest.raises(ValueError, match="one shape"):
        blend_overlap(frames, frames[:2])
