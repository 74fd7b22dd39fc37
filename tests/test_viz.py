"""Colour bars: metric ticks at their inverse-depth place; the relative-depth bar is unitless
(no metre values) and its ticks sit where `focaldepth predict` colours those values."""

from __future__ import annotations

import re

import matplotlib
import numpy as np
import pytest

from focaldepth import viz

#: A number followed by a metre unit ("1 m", "1.5m", "2 metres").
METRE_VALUE = re.compile(r"\d\s*(m|metre|meter)s?\b", re.IGNORECASE)


def test_metric_ticks_are_round_metres_at_their_inverse_depth_place():
    ticks = viz.colorbar_ticks(1.0, 2.0)
    assert [t.label for t in ticks] == ["2", "1.7", "1.4", "1.2", "1.1", "1"]
    for tick in ticks:  # colours are linear in inverse depth: 1/d from 1/far (0) to 1/near (1)
        depth_m = float(tick.label)
        assert tick.position == pytest.approx((1 / depth_m - 0.5) / (1.0 - 0.5))
    # Spread along the bar, not crowded at the far end; labels stay on the bar.
    ticks = viz.colorbar_ticks(0.2634, 4.03)
    positions = [t.position for t in ticks]
    assert len(ticks) >= 5 and min(np.diff(sorted(positions))) >= 0.08
    assert all(0.2634 <= float(t.label) <= 4.03 for t in ticks) and positions[-1] > 0.9 and positions[0] < 0.1
    with pytest.raises(ValueError):
        viz.colorbar_ticks(2.0, 1.0)


def test_relative_ticks_are_unitless_near_to_far():
    ticks = viz.relative_colorbar_ticks()
    labels = [t.label for t in ticks]
    assert labels[0] == "far" and labels[-1] == "near"
    assert [t.position for t in ticks] == sorted(t.position for t in ticks)
    assert ticks[0].position == 0.0 and ticks[-1].position == 1.0
    for tick in ticks:
        assert not METRE_VALUE.search(tick.label), tick.label
        assert "m" not in tick.label.replace("near", ""), tick.label
        if tick.label not in ("near", "far"):  # numbers are the relative value itself
            assert float(tick.label) == pytest.approx(tick.position)
    # none of the pseudo-metre labels the relative bar used to show (pseudo range 1-2 m)
    pseudo = {t.label for t in viz.colorbar_ticks(1.0, 2.0)} - {"1"}
    assert not pseudo & set(labels)


def test_relative_ticks_sit_where_predict_colours_that_relative_depth():
    """A frame of constant relative depth r through predict's video panel gets the colour the
    bar shows at r's tick (predict colours relative depth linearly in r)."""
    from focaldepth.predict import video_panel

    lut = (matplotlib.colormaps[viz.DEFAULT_CMAP](np.linspace(0, 1, 256))[:, :3] * 255 + 0.5)
    frame = np.zeros((40, 50, 3), np.uint8)
    for tick in viz.relative_colorbar_ticks():
        panel = video_panel(frame, np.full((40, 50), tick.position, np.float32), 1.0, 2.0,
                            metric=False)
        depth_colour = panel[20, 50 + 4 + 25].astype(float)  # middle of the depth panel
        lut_index = int(np.abs(lut - depth_colour).sum(axis=1).argmin())
        # within one of the 256 colour steps (float rounding at exact halves)
        assert abs(lut_index - tick.position * 255) <= 1.0, (tick, lut_index)


def test_relative_colour_bar_image():
    metric = viz.colorbar_image(1.0, 2.0, 200, label="relative depth")
    relative = viz.relative_colorbar_image(200)
    assert relative.shape == metric.shape == (200, 90, 3) and relative.dtype == np.uint8
    assert len(np.unique(relative.reshape(-1, 3), axis=0)) > 50  # a gradient and labels
    # the same gradient and title: only the tick labels differ (the right-hand part)
    assert np.array_equal(relative[:, :20], metric[:, :20])
    assert not np.array_equal(relative, metric)
