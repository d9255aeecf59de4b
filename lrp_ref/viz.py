"""Heatmaps: relevance to colour, and PNG figures.

The colour mapping is plain NumPy and always available.  Writing PNG files
needs the optional ``viz`` extra (``pip install lrp_ref[viz]``: matplotlib,
which brings Pillow); those imports happen inside the functions that need
them, so ``import lrp_ref`` never loads them.

Colour convention: a diverging map centred at zero, red for positive
relevance (evidence for the explained class), blue for negative (evidence
against), white for zero.  Normalisation is symmetric: values are divided by
the largest absolute relevance of the map, so the same colour means the same
fraction of that maximum on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import LrpRefError, ShapeError

__all__ = ["heatmap_rgb", "normalize_symmetric", "overlay", "save_comparison", "save_png", "to_2d"]

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


def overlay(relevance: Array, image: Array, alpha: float = 0.6) -> Array:
    """The heatmap blended over a grey version of ``image`` (H, W) or (C, H, W), values in any range.

    Where relevance is near zero the input shows through.
    """
    grey = to_2d(image) if np.ndim(image) != 2 else np.asarray(image, dtype=np.float64)
    lo, hi = grey.min(), grey.max()
    grey = (grey - lo) / (hi - lo) if hi > lo else np.zeros_like(grey)
    base = np.repeat(grey[..., None], 3, axis=-1)
    strength = alpha * np.abs(normalize_symmetric(to_2d(relevance)))[..., None]
    return (1 - strength) * base + strength * heatmap_rgb(relevance)


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


def save_comparison(
    image: Array,
    panels: Sequence[tuple[str, Array, str]],
    path: str | Path,
    title: str,
    columns: int = 5,
) -> Path:
    """One labelled figure: the input, then one heatmap per ``(label, relevance, caption)`` panel."""
    return save_comparison_groups([("", image, panels, "")], path, title, columns)


def save_comparison_groups(
    groups: Sequence[tuple[str, Array, Sequence[tuple[str, Array, str]], str]],
    path: str | Path,
    title: str,
    columns: int = 5,
) -> Path:
    """Several blocks of rows in one figure, one per ``(heading, input image, panels, input caption)`` group.

    Each block (e.g. one per model) starts with its input, titled with the heading (or "input"), then
    one heatmap per ``(label, relevance, caption)`` panel.
    """
    plt = _require_viz("the comparison figure")
    block_rows = [-(-(len(panels) + 1) // columns) for _, _, panels, _ in groups]
    rows = sum(block_rows)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.9 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    first_row = 0
    for (heading, image, panels, caption), n_rows in zip(groups, block_rows):
        block = axes[first_row:first_row + n_rows].flat
        grey = to_2d(image) if np.ndim(image) != 2 else np.asarray(image)
        block[0].imshow(grey, cmap="gray")
        block[0].set_title(heading or "input", fontsize=10, fontweight="bold" if heading else "normal")
        if caption:
            block[0].text(0.5, -0.06, caption, transform=block[0].transAxes, ha="center", va="top", fontsize=7.5)
        for ax, (label, relevance, caption) in zip(block[1:], panels):
            ax.imshow(heatmap_rgb(relevance), interpolation="nearest")
            ax.set_title(label, fontsize=9)
            ax.text(0.5, -0.06, caption, transform=ax.transAxes, ha="center", va="top", fontsize=7.5)
        first_row += n_rows
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
