"""Heatmap colours and PNG writing."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose

from lrp_ref import viz


def test_diverging_map_red_positive_blue_negative_white_zero():
    r = np.array([[1.0, -1.0, 0.0, 0.5, -0.25]])
    rgb = viz.heatmap_rgb(r)
    assert rgb.shape == (1, 5, 3)
    red, blue, white = rgb[0, 0], rgb[0, 1], rgb[0, 2]
    assert red[0] > 0.3 and red[2] < 0.1          # strong red
    assert blue[2] > 0.3 and blue[0] < 0.1        # strong blue
    assert_allclose(white, [1.0, 1.0, 1.0], rtol=0, atol=0)
    assert rgb[0, 3, 0] > rgb[0, 3, 2]            # half positive: reddish
    assert rgb[0, 4, 2] > rgb[0, 4, 0]            # quarter negative: bluish
    assert np.all((rgb >= 0) & (rgb <= 1))


def test_normalisation_is_symmetric_and_scale_free():
    r = np.random.default_rng(0).normal(size=(6, 6))
    assert_allclose(viz.normalize_symmetric(r), r / np.abs(r).max(), rtol=1e-15)
    assert_allclose(viz.heatmap_rgb(r), viz.heatmap_rgb(1000 * r), rtol=1e-12)
    # a map and its negative are mirror images: red <-> blue channels swap around white
    assert_allclose(viz.normalize_symmetric(-r), -viz.normalize_symmetric(r), rtol=0)
    assert_allclose(viz.heatmap_rgb(np.zeros((3, 3))), np.ones((3, 3, 3)), rtol=0)


def test_channels_summed_and_batch_of_one_accepted():
    r = np.random.default_rng(1).normal(size=(1, 3, 4, 5))
    assert_allclose(viz.to_2d(r), r[0].sum(axis=0), rtol=1e-15)
    with pytest.raises(viz.ShapeError, match="one sample"):
        viz.to_2d(np.zeros((2, 3, 4, 5)))


def test_overlay_shows_input_where_relevance_is_zero():
    image = np.linspace(0, 1, 16).reshape(4, 4)
    r = np.zeros((4, 4))
    r[0, 0] = 1.0
    out = viz.overlay(r, image)
    assert_allclose(out[1:, :, 0], image[1:, :], rtol=1e-12)
    assert out[0, 0, 0] > out[0, 0, 2]


def test_png_written(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    path = viz.save_png(viz.heatmap_rgb(np.eye(3) - 0.5), tmp_path / "h.png", scale=2)
    img = np.asarray(pil.open(path))
    assert img.shape == (6, 6, 3)
    assert img[0, 0, 0] > img[0, 0, 2]  # diagonal positive: red


def test_import_lrp_ref_loads_no_plotting_or_torch_library():
    code = ("import sys, lrp_ref, lrp_ref.viz, lrp_ref.cli; "
            "print(sorted(m for m in ('matplotlib', 'PIL', 'torch', 'zennit', 'captum') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
