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
    image = np.linspace(0, 1, 16).reshape(4, 4)  # median 1/2: a light image, not inverted
    r = np.zeros((4, 4))
    r[0, 0] = 1.0
    out = viz.overlay(r, image)
    for c in range(3):  # the input on a light grey scale, 0.7 (darkest) .. 1 (white), where R = 0
        assert_allclose(out[..., c].ravel()[1:], 0.7 + 0.3 * image.ravel()[1:], rtol=1e-12)
    assert out[0, 0, 0] > out[0, 0, 2]


def test_overlay_inverts_a_dark_image_to_ink_on_paper():
    digit = np.zeros((5, 5))
    digit[2, 1:4] = 255.0  # a white stroke on black, as in MNIST
    out = viz.overlay(np.zeros((5, 5)), digit)
    assert_allclose(out[0, 0], [1.0, 1.0, 1.0], rtol=1e-12)  # the black background becomes white paper
    assert_allclose(out[2, 2], [0.7, 0.7, 0.7], rtol=1e-12)  # the stroke becomes grey ink
    assert_allclose(viz.overlay(np.zeros((5, 5)), digit, invert=False)[0, 0], [0.7] * 3, rtol=1e-12)


def test_overlay_keeps_both_signs_visible_on_paper_and_on_ink():
    """Blue must stay clearly blue where it lies over the input's strokes, and red clearly red."""
    digit = np.zeros((5, 4))
    digit[2, :] = 1.0  # row 2: a light stroke (ink once inverted); the other rows: dark background (paper)
    r = np.zeros((5, 4))
    r[:, 0], r[:, 1] = 1.0, -1.0
    r[:, 2], r[:, 3] = 0.5, -0.5
    out = viz.overlay(r, digit)
    heat = viz.heatmap_rgb(r)
    assert_allclose(out[0], heat[0], rtol=1e-12)  # on paper: exactly the heatmap's colours
    for row in (0, 2):  # paper and ink
        for col, (strong, weak) in ((0, (0, 2)), (1, (2, 0)), (2, (0, 2)), (3, (2, 0))):
            pixel = out[row, col]
            assert pixel[strong] - pixel[weak] > 0.15, (row, col, pixel)  # the sign's colour dominates clearly
    # half-strength blue on a stroke is still a clear mid blue (blending towards a black stroke would darken it)
    assert out[2, 3, 2] > 0.6 and out[2, 3, 2] - out[2, 3, 0] > 0.4


def test_colormap_matches_heatmap_rgb():
    pytest.importorskip("matplotlib")
    v = np.linspace(-1, 1, 41)
    rgb = viz.colormap()((v + 1) / 2)[:, :3]
    assert_allclose(rgb, viz.heatmap_rgb(v[None])[0], rtol=0, atol=2.5 / 512)


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


# ----------------------------------------------------------------------------- figures


def _groups(rng: np.random.Generator, n_groups: int = 2, n_panels: int = 9) -> list:
    """Blocks as compare-rules draws them: an input, then panels whose magnitudes differ by orders."""
    groups = []
    for g in range(n_groups):
        panels = [(f"rule {k} (\u03b3=0.25)", rng.normal(size=(1, 28, 28)) * 10.0 ** (k - 4),
                   f"\u03a3R = {k:.3g}, f(x) = 9.56") for k in range(n_panels)]
        groups.append((f"model_{g}", rng.uniform(0, 1, size=(1, 28, 28)), panels, "class 0, f(x) = 9.556"))
    return groups


def _boxes(fig) -> tuple[list, list]:
    """Window extents of every visible non-empty text and of every axes showing an image, after drawing."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts, images = [], []
    for ax in fig.axes:
        if ax.images:
            images.append((ax, ax.get_window_extent(renderer)))
        for t in (ax.title, ax.xaxis.label):
            if t.get_visible() and t.get_text():
                texts.append((t.get_text(), ax, t.get_window_extent(renderer)))
    for sub in [fig, *fig.subfigs]:
        if sub._suptitle is not None and sub._suptitle.get_text():
            texts.append((sub._suptitle.get_text(), None, sub._suptitle.get_window_extent(renderer)))
    return texts, images


@pytest.mark.parametrize("n_groups", [1, 2])
def test_comparison_captions_collide_with_nothing(n_groups):
    """Blocks of two rows, two-line captions (the panel scale adds max|R|): no text touches another or a map."""
    plt = pytest.importorskip("matplotlib.pyplot")
    groups = _groups(np.random.default_rng(0), n_groups)
    if n_groups == 1:  # one model: no block heading, as compare-rules draws it
        groups = [("", image, panels, "") for _, image, panels, _ in groups]
    fig = viz.comparison_figure(groups, "each model explains its own prediction")
    try:
        texts, images = _boxes(fig)
        headings = n_groups if n_groups > 1 else 0
        assert len(texts) == n_groups * (10 + 9) + headings + 1  # titles, captions, block headings, figure title
        for i, (a, ax_a, box_a) in enumerate(texts):
            for b, _, box_b in texts[i + 1:]:
                assert not box_a.overlaps(box_b), f"{a!r} overlaps {b!r}"
            for ax, box in images:
                if ax is not ax_a:
                    assert not box_a.overlaps(box), f"{a!r} overlaps another panel's image"
        for i, (_, box_a) in enumerate(images):
            for _, box_b in images[i + 1:]:
                assert not box_a.overlaps(box_b)
    finally:
        plt.close(fig)


def test_comparison_scales_per_panel_or_shared_and_says_so():
    plt = pytest.importorskip("matplotlib.pyplot")
    groups = _groups(np.random.default_rng(1), n_groups=1, n_panels=4)
    peaks = [float(np.abs(r).max()) for _, r, _ in groups[0][2]]
    for scale, expected in (("panel", peaks), ("shared", [max(peaks)] * 4)):
        fig = viz.comparison_figure(groups, "t", scale=scale)
        try:
            heatmaps = [ax for ax in fig.axes if ax.images and ax.get_title().startswith("rule")]
            assert_allclose([ax.images[0].get_clim() for ax in heatmaps], [(-p, p) for p in expected], rtol=1e-12)
            bars = [ax for ax in fig.axes if not ax.images and ax.get_ylabel()]
            assert len(bars) == 1  # one colour bar beside the block
            title = fig._suptitle.get_text()
            if scale == "panel":
                assert "each map scaled to its own max|R|" in title
                assert bars[0].get_ylabel() == "R / max|R| of its panel"
                assert [ax.get_xlabel().splitlines()[-1] for ax in heatmaps] == [f"max|R| = {p:.3g}" for p in peaks]
            else:
                assert f"one colour scale for every map, \u00b1{max(peaks):.3g}" in title
                assert_allclose(bars[0].get_ylim(), (-max(peaks), max(peaks)), rtol=1e-12)
        finally:
            plt.close(fig)
    with pytest.raises(viz.ArgumentError, match="scale must be one of panel, shared; got 'mean'"):
        viz.comparison_figure(groups, "t", scale="mean")


def test_heatmap_figure_has_a_colour_bar_in_relevance_units(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    r = np.abs(np.random.default_rng(2).normal(size=(28, 28)))  # all positive: the map itself has no blue
    path = viz.save_heatmap(r, tmp_path / "h.png", "class 3")
    img = np.asarray(pil.open(path))[..., :3] / 255.0
    darkest_blue = np.array([0.02, 0.19, 0.38])
    assert np.any(np.all(np.abs(img - darkest_blue) < 0.02, axis=-1))  # the colour bar's bottom end
    plt = pytest.importorskip("matplotlib.pyplot")
    fig = viz.heatmap_figure(r, "class 3", image=np.zeros((28, 28)))
    try:
        bar = fig.axes[-1]
        assert bar.get_ylabel() == "relevance R"
        assert_allclose(bar.get_ylim(), (-r.max(), r.max()), rtol=1e-12)
        assert f"over the input (grey), scaled to this map's max|R| = {r.max():.3g}" in fig.axes[0].get_xlabel()
    finally:
        plt.close(fig)


def test_a_reused_heatmap_figure_draws_as_a_fresh_one(tmp_path):
    """HeatmapWriter redraws one figure per map: nothing of the previous map (scale, title, size) may remain."""
    pil = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(3)
    first, second = rng.normal(size=(28, 28)) * 100, rng.normal(size=(20, 24))
    image = rng.uniform(0, 255, size=(20, 24))
    with viz.HeatmapWriter() as writer:
        writer.save(first, tmp_path / "first.png", "a long first title " * 6)
        reused = writer.save(second, tmp_path / "reused.png", "second", image=image)
    fresh = viz.save_heatmap(second, tmp_path / "fresh.png", "second", image=image)
    np.testing.assert_array_equal(np.asarray(pil.open(reused)), np.asarray(pil.open(fresh)))
