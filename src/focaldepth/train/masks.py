"""The seed's "valid depth range" mask (kept apart from the Lightning code so evaluation can
use it without importing Lightning)."""

from __future__ import annotations

from typing import Any

from focaldepth.models.base import depth_range_dpt


def mask_to_focus_range(batch: dict[str, Any], margin: float | None) -> dict[str, Any]:
    """The batch with ``valid`` restricted to pixels whose ground-truth depth lies in the
    inverse-depth span of the stack's focus distances, widened by ``margin`` of its width on
    each side. Depth from focus cannot resolve a surface far beyond the nearest or farthest
    focus plane (its blur only grows), which is why the seed excluded the wall from its loss.
    ``margin=None`` returns the batch unchanged."""
    if margin is None:
        return batch
    low, high = depth_range_dpt(batch["focus_distance_m"].float(), margin)
    inverse_depth = 1.0 / batch["depth_m"].float().clamp_min(1e-6)
    in_range = (inverse_depth >= low) & (inverse_depth <= high)
    return {**batch, "valid": batch["valid"].bool() & in_range}
