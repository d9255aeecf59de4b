"""Heatmaps: relevance to colour, and PNG figures.

The colour mapping is plain NumPy and always available.  Writing PNG files
and drawing figures needs the optional ``viz`` extra (``pip install
lrp_ref[viz]``: matplotlib, which brings Pillow); those imports happen inside
the functions that need them, so ``import lrp_ref`` never loads them.

Colour convention: a diverging map centred at zero, red for positive
relevance (evidence for the explained class), blue for negative (evidence
against), white for zero.  Normalisation is symmetric: values are divided by
the largest absolute relevance of the map, so the same colour means the same
fraction of that maximum on both sides.

Figures (:func:`save_heatmap`, :func:`save_comparison_groups`) carry a
colour bar and say how they are scaled: one map to its own ``max|R|``, or, in
a comparison, each panel to its own ``max|R|`` (``scale="panel"``, the
maximum printed under each panel) or every panel to one scale
(``scale="shared"``).  :func:`overlay` lays the map over a light grey copy
of the input, so that both signs stay visible.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import ArgumentError, LrpRefError, ShapeError

__all__ = [
    "SCALES",
    "HeatmapWriter",
    "colormap",
    "comparison_figure",
    "heatmap_figure",
    "heatmap_rgb",
    "normalize_symmetric",
    "overlay",
    "save_comparison",
    "save_comparison_groups",
    "save_heatmap",
    "save_png",
    "to_2d",
]

Array = NDArray[Any]

# anchor colours of the diverging map, from -1 to +1 (dark blue, blue, white, red, dark red)
_ANCHORS = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
_COLOURS = np.array([
    [0.02, 0.19, 0.38],
    [0.26, 0.58, 0.98],
    [1.00, 1.00, 1.00],
    [0.98, 0.26, 0.20],
    [0.40, 0.00, 0.05],
])


def to_2d(relevance: Array) -> Array:
    """One sample's relevance as a 2-D map: channels are summed, a leading 1 is dropped.

    Accepts (H, W), (C, H, W) or (1, C, H, W).
    """
    r = np.asarray(relevance, dtype=np.float64)
    if r.ndim == 4 and r.shape[0] == 1:
        r = r[0]
    if r.ndim == 3:
        r = r.sum(axis=0)
    if r.ndim != 2:
        raise ShapeError(
            f"a heatmap needs one sample of shape (H, W), (C, H, W) or (1, C, H, W); got {np.shape(relevance)}"
        )
    return r


def normalize_symmetric(relevance: Array) -> Array:
    """Divide by the largest absolute value, so the result lies in [-1, 1] (all zeros stay zero)."""
    r = np.asarray(relevance, dtype=np.float64)
    peak = np.abs(r).max() if r.size else 0.0
    return r / peak if peak > 0 else np.zeros_like(r)


def heatmap_rgb(relevance: Array) -> Array:
    """RGB image (H, W, 3) in [0, 1]: red positive, blue negative, white zero, symmetric scale."""
    v = normalize_symmetric(to_2d(relevance))
    return np.stack([np.interp(v, _ANCHORS, _COLOURS[:, c]) for c in range(3)], axis=-1)


def _grey(image: Array) -> Array:
    """One sample's image as grey values in [0, 1] (channels averaged, stretched to its own range)."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        img = img.mean(axis=0)
    elif img.ndim != 2:
        raise ShapeError(f"an image must be (H, W) or (C, H, W); got shape {img.shape}")
    lo, hi = img.min(), img.max()
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def overlay(relevance: Array, image: Array, alpha: float = 1.0, invert: bool | None = None) -> Array:
    r"""The heatmap laid over a light grey version of ``image``, like a coloured transparency: RGB (H, W, 3).

    The input, ``(H, W)`` or ``(C, H, W)`` in any range, becomes grey values
    ``g`` in [0, 1] (channels averaged, stretched to the image's range) and is
    shown on a light scale, ``base = 0.7 + 0.3 g``, so that both colours of the
    diverging map stay visible on it: blue on a black background would not
    be.  A dark image with light strokes (an MNIST digit) is inverted first,
    so its strokes show as grey ink on white paper; ``invert`` forces or
    prevents that (default: invert when the median of ``g`` is below 1/2).
    The map is blended by multiplication,

    .. math:: \mathrm{rgb} = \mathrm{base} \cdot ((1 - \alpha) + \alpha\, \mathrm{heatmap}(R)),

    so where the relevance is zero (white in the map) the input shows
    unchanged, and on white paper the colours are exactly those of
    :func:`heatmap_rgb` (with the default ``alpha = 1``; a smaller ``alpha``
    fades the map).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ArgumentError(f"alpha must lie in [0, 1]; got {alpha!r}")
    g = _grey(to_2d(image) if np.ndim(image) == 4 else image)
    if invert is None:
        invert = bool(np.median(g) < 0.5)
    if invert:
        g = 1.0 - g
    base = (0.7 + 0.3 * g)[..., None]
    heat = heatmap_rgb(relevance)
    if heat.shape[:2] != base.shape[:2]:
        raise ShapeError(f"relevance map {heat.shape[:2]} and image {base.shape[:2]} must have one size")
    return base * ((1.0 - alpha) + alpha * heat)


def colormap() -> Any:
    """The diverging map of :func:`heatmap_rgb` as a matplotlib colormap (needs the viz extra)."""
    _require_viz("the colour map")
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("lrp_ref", list(zip((_ANCHORS + 1) / 2, _COLOURS)), N=512)


def _require_viz(feature: str) -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise LrpRefError(f"{feature} needs the optional 'viz' extra: pip install 'lrp_ref[viz]'") from exc
    return plt


def save_png(rgb: Array, path: str | Path, scale: int = 8) -> Path:
    """Write an RGB image (H, W, 3) in [0, 1] to ``path``, each pixel enlarged ``scale`` times."""
    _require_viz("writing PNG files")
    from PIL import Image

    img: Array = np.clip(np.asarray(rgb, dtype=np.float64), 0, 1)
    if scale > 1:
        img = np.kron(img, np.ones((scale, scale, 1)))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img * 255 + 0.5).astype(np.uint8), mode="RGB").save(out)
    return out


#: How the figures scale their colours: each map to its own largest |R|, or one scale for every map.
SCALES = ("panel", "shared")

_RED_BLUE = "red: evidence for, blue: against"


def _check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ArgumentError(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")


def _peak(relevance: Array) -> float:
    return float(np.abs(to_2d(relevance)).max())


def _bare(ax: Any) -> None:
    """An image axis without ticks, in a thin grey frame (a map's white is the page's), with room for a caption."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#b0b0b0")
        spine.set_linewidth(0.8)


_SHARED_LABEL = "relevance R (one scale for every panel)"


def _colorbar(fig: Any, axes: Any, peak: float, scale: str, label: str = _SHARED_LABEL) -> None:
    """A colour bar beside ``axes``: relevance units for one scale, fractions of each panel's max for per-panel."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    if scale == "shared":
        mappable = ScalarMappable(Normalize(-peak, peak), colormap())
    else:
        mappable = ScalarMappable(Normalize(-1.0, 1.0), colormap())
        label = "R / max|R| of its panel"
    bar = fig.colorbar(mappable, ax=axes, shrink=0.85, aspect=25, pad=0.02)
    bar.set_label(label, fontsize=9)
    bar.ax.tick_params(labelsize=8)
    if scale == "panel":
        bar.set_ticks([-1, -0.5, 0, 0.5, 1], labels=["-max", "-max/2", "0", "+max/2", "+max"])


def _save(fig: Any, path: str | Path, dpi: int) -> Path:
    plt = _require_viz("writing figures")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def save_heatmap(relevance: Array, path: str | Path, title: str = "", image: Array | None = None) -> Path:
    """A figure of one relevance map with a colour bar in relevance units; over ``image`` if given (the overlay).

    The colour scale is symmetric, ``[-max|R|, +max|R|]`` of this map, and
    the figure says so; with ``image`` the map is drawn by :func:`overlay`.
    For many maps, :class:`HeatmapWriter` reuses one figure.
    """
    with HeatmapWriter() as writer:
        return writer.save(relevance, path, title, image)


def heatmap_figure(relevance: Array, title: str = "", image: Array | None = None) -> Any:
    """The matplotlib figure :func:`save_heatmap` saves (close it with ``matplotlib.pyplot.close``)."""
    return HeatmapWriter().draw(relevance, title, image)


class HeatmapWriter:
    """Writes heatmap figures (as :func:`save_heatmap`) one after another, reusing one matplotlib figure.

    Building a figure costs more than saving it, so a batch of samples is
    written several times faster this way.  Use it as a context manager, or
    call :meth:`close` when done.
    """

    def __init__(self) -> None:
        plt = _require_viz("the heatmap figure")
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        self._plt = plt
        # fixed positions (no layout engine), room for a title of five lines and a caption of two
        self.fig = plt.figure(figsize=(4.6, 4.4))
        self._ax = self.fig.add_axes((0.05, 0.15, 0.72, 0.68))
        _bare(self._ax)
        self._image = self._ax.imshow(np.ones((1, 1, 3)), interpolation="nearest")
        self._mappable = ScalarMappable(Normalize(-1.0, 1.0), colormap())
        bar = self.fig.colorbar(self._mappable, cax=self.fig.add_axes((0.8, 0.19, 0.035, 0.6)))
        bar.set_label("relevance R", fontsize=9)
        bar.ax.tick_params(labelsize=8)

    def draw(self, relevance: Array, title: str = "", image: Array | None = None) -> Any:
        """The figure, showing ``relevance`` (over ``image`` if given) with its title and scale."""
        r = to_2d(relevance)
        peak = _peak(r)
        rgb = heatmap_rgb(r) if image is None else overlay(r, image)
        self._image.set_data(rgb)
        self._image.set_extent((-0.5, rgb.shape[1] - 0.5, rgb.shape[0] - 0.5, -0.5))
        self._mappable.set_clim(-(peak or 1.0), peak or 1.0)
        lines = [part for line in title.splitlines()
                 for part in textwrap.wrap(line, 66, break_on_hyphens=False) or [""]]
        self._ax.set_title("\n".join(lines[:5]), fontsize=8.5)  # wrapped to the figure's width
        over = "" if image is None else "over the input (grey), "
        self._ax.set_xlabel(f"{over}scaled to this map's max|R| = {peak:.3g}\n{_RED_BLUE}; "
                            f"sum R = {float(r.sum()):.4g}", fontsize=8)
        return self.fig

    def save(self, relevance: Array, path: str | Path, title: str = "", image: Array | None = None) -> Path:
        """Draw and write one figure to ``path``."""
        self.draw(relevance, title, image)
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        self.fig.savefig(out, dpi=110)
        return out

    def close(self) -> None:
        self._plt.close(self.fig)

    def __enter__(self) -> HeatmapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def save_comparison(
    image: Array,
    panels: Sequence[tuple[str, Array, str]],
    path: str | Path,
    title: str,
    columns: int = 5,
    scale: str = "panel",
) -> Path:
    """One labelled figure: the input, then one heatmap per ``(label, relevance, caption)`` panel."""
    return save_comparison_groups([("", image, panels, "")], path, title, columns, scale)


def save_comparison_groups(
    groups: Sequence[tuple[str, Array, Sequence[tuple[str, Array, str]], str]],
    path: str | Path,
    title: str,
    columns: int = 5,
    scale: str = "panel",
) -> Path:
    """Several blocks of rows in one figure, one per ``(heading, input image, panels, heading caption)`` group.

    Each block (e.g. one per model) is headed by its heading and caption,
    starts with its input, then shows one heatmap per ``(label, relevance,
    caption)`` panel, the caption under it; a colour bar stands beside every
    block.  ``scale="panel"`` scales every map to its own largest ``|R|``
    (added to its caption): the structure of every rule stays visible even
    where their magnitudes differ by orders; ``"shared"`` uses one scale,
    the largest ``|R|`` of the figure, for all maps, so that equal colours
    mean equal relevance.
    """
    return _save(comparison_figure(groups, title, columns, scale), path, 100)


def comparison_figure(
    groups: Sequence[tuple[str, Array, Sequence[tuple[str, Array, str]], str]],
    title: str,
    columns: int = 5,
    scale: str = "panel",
) -> Any:
    """The matplotlib figure :func:`save_comparison_groups` saves (close it with ``matplotlib.pyplot.close``)."""
    _check_scale(scale)
    plt = _require_viz("the comparison figure")
    block_rows = [-(-(len(panels) + 1) // columns) for _, _, panels, _ in groups]
    shared = max((_peak(r) for _, _, panels, _ in groups for _, r, _ in panels), default=0.0) or 1.0
    headed = sum(1 for heading, _, _, caption in groups if heading or caption)
    fig = plt.figure(figsize=(2.45 * columns + 1.2, 3.0 * sum(block_rows) + 0.5 * headed + 0.7),
                     layout="constrained")
    subfigs = fig.subfigures(len(groups), 1, height_ratios=[n + 0.3 for n in block_rows], squeeze=False)[:, 0]
    for sub, (heading, image, panels, caption), n_rows in zip(subfigs, groups, block_rows):
        axes = sub.subplots(n_rows, columns, squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        block = list(axes.flat)
        if heading or caption:
            sub.suptitle(": ".join(t for t in (heading, caption) if t), fontsize=11, fontweight="bold")
        block[0].axis("on")
        block[0].imshow(_grey(to_2d(image) if np.ndim(image) == 4 else image), cmap="gray", vmin=0, vmax=1)
        block[0].set_title("input", fontsize=10)
        _bare(block[0])
        for ax, (label, relevance, text) in zip(block[1:], panels):
            r = to_2d(relevance)
            peak = _peak(r) if scale == "panel" else shared
            ax.axis("on")
            ax.imshow(r, cmap=colormap(), vmin=-(peak or 1.0), vmax=peak or 1.0, interpolation="nearest")
            _bare(ax)
            ax.set_title(label, fontsize=9.5)
            lines = [text] + ([f"max|R| = {_peak(r):.3g}"] if scale == "panel" else [])
            ax.set_xlabel("\n".join(t for t in lines if t), fontsize=8)
        _colorbar(sub, axes, shared, scale)
    how = ("each map scaled to its own max|R|" if scale == "panel"
           else f"one colour scale for every map, \u00b1{shared:.3g}")
    fig.suptitle(f"{title}\n{_RED_BLUE}; {how}", fontsize=11)
    return fig
